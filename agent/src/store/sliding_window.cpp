#include "rollguard/agent/sliding_window.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace rollguard::agent {

// ---------------------------------------------------------------------------------------
// IntervalStats

IntervalStats::IntervalStats(const HistogramSettings& settings)
    : latency(settings.lowest, settings.highest, settings.sigfigs) {}

void IntervalStats::reset() {
    events = 0;
    errors = 0;
    latency.reset();
}

// ---------------------------------------------------------------------------------------
// IntervalRecorder

IntervalRecorder::IntervalRecorder(const HistogramSettings& settings) : settings_(settings), current_(settings) {}

std::int64_t IntervalRecorder::toUnits(double seconds) const {
    if (std::isnan(seconds) || seconds < 0.0) {
        return -1;
    }
    const double units = std::round(seconds * settings_.units_per_second);
    // 2^63 as a double; anything at or above it cannot be converted, and the histogram
    // clamps it into its top slot anyway.
    if (!(units < 9223372036854775808.0)) {
        return std::numeric_limits<std::int64_t>::max();
    }
    return std::max<std::int64_t>(0, static_cast<std::int64_t>(units));
}

void IntervalRecorder::record(double latency_seconds, bool error) {
    const std::int64_t units = toUnits(latency_seconds);
    std::lock_guard lock(mutex_);
    ++current_.events;
    if (error) {
        ++current_.errors;
    }
    if (units >= 0) {
        current_.latency.record(units);
    }
}

void IntervalRecorder::recordBatch(const IntervalStats& batch) {
    std::lock_guard lock(mutex_);
    current_.events += batch.events;
    current_.errors += batch.errors;
    current_.latency.add(batch.latency);
}

IntervalStats IntervalRecorder::take() {
    // The fresh interval is allocated outside the lock so writers only wait for a swap.
    IntervalStats fresh(settings_);
    {
        std::lock_guard lock(mutex_);
        std::swap(fresh, current_);
    }
    return fresh;
}

// ---------------------------------------------------------------------------------------
// WindowStats

WindowStats::WindowStats(const HistogramSettings& settings)
    : latency(settings.lowest, settings.highest, settings.sigfigs), units_per_second_(settings.units_per_second) {}

double WindowStats::quantileSeconds(double q) const {
    return static_cast<double>(latency.valueAtPercentile(q * 100.0)) / units_per_second_;
}

double WindowStats::meanSeconds() const {
    return latency.mean() / units_per_second_;
}

double WindowStats::minSeconds() const {
    return static_cast<double>(latency.min()) / units_per_second_;
}

double WindowStats::maxSeconds() const {
    return static_cast<double>(latency.max()) / units_per_second_;
}

rules::SeriesStats WindowStats::asSeriesStats() const {
    rules::SeriesStats stats;
    stats.events = events;
    stats.errors = errors;
    stats.window = covered;
    stats.latency = this;
    return stats;
}

// ---------------------------------------------------------------------------------------
// SlidingWindow

SlidingWindow::SlidingWindow(std::chrono::nanoseconds slot_width, std::chrono::nanoseconds retention,
                             const HistogramSettings& settings)
    : slot_width_(slot_width), retention_(retention), settings_(settings) {
    if (slot_width_.count() <= 0) {
        throw std::invalid_argument("SlidingWindow: slot width must be positive");
    }
    if (retention_ < slot_width_) {
        throw std::invalid_argument("SlidingWindow: retention must be at least one slot");
    }
    // Fail at construction, not on the first add, if the settings are unusable.
    HdrHistogram probe(settings_.lowest, settings_.highest, settings_.sigfigs);
}

std::int64_t SlidingWindow::slotIndex(rules::TimePoint t) const {
    const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    const std::int64_t w = slot_width_.count();
    // Floor division, so instants before the epoch do not share slot 0.
    std::int64_t q = ns / w;
    if (ns % w != 0 && ns < 0) {
        --q;
    }
    return q;
}

void SlidingWindow::expire(std::int64_t newest_index) {
    const std::int64_t cutoff = newest_index - retention_ / slot_width_;
    while (!slots_.empty() && slots_.front().index <= cutoff) {
        slots_.pop_front();
    }
}

void SlidingWindow::add(rules::TimePoint at, const IntervalStats& interval) {
    const HdrHistogram& h = interval.latency;
    if (h.lowestTrackableValue() != settings_.lowest || h.highestTrackableValue() != settings_.highest ||
        h.significantFigures() != settings_.sigfigs) {
        // Indices of another layout would mean other values: a wiring bug, not data.
        throw std::invalid_argument("SlidingWindow::add: interval histogram has different settings");
    }
    const std::int64_t index = slotIndex(at);
    if (!slots_.empty() && index <= slots_.back().index - retention_ / slot_width_) {
        return;  // already expired: it would be dropped by the next expire() anyway
    }

    auto it = std::lower_bound(slots_.begin(), slots_.end(), index,
                               [](const Slot& s, std::int64_t i) { return s.index < i; });
    if (it == slots_.end() || it->index != index) {
        Slot slot;
        slot.index = index;
        it = slots_.insert(it, std::move(slot));
    }
    Slot& slot = *it;
    slot.events += interval.events;
    slot.errors += interval.errors;

    if (h.totalCount() > 0) {
        // Sized exactly: memory is what a long retention costs, so no growth slack.
        std::size_t non_zero = 0;
        h.forEachNonZero([&non_zero](std::int32_t, std::int64_t) { ++non_zero; });
        std::vector<std::pair<std::int32_t, std::int64_t>> incoming;
        incoming.reserve(non_zero);
        h.forEachNonZero([&incoming](std::int32_t i, std::int64_t c) { incoming.emplace_back(i, c); });
        if (slot.counts.empty()) {
            slot.counts = std::move(incoming);
        } else {
            std::vector<std::pair<std::int32_t, std::int64_t>> merged;
            merged.reserve(slot.counts.size() + incoming.size());
            auto a = slot.counts.begin();
            auto b = incoming.begin();
            while (a != slot.counts.end() || b != incoming.end()) {
                if (b == incoming.end() || (a != slot.counts.end() && a->first < b->first)) {
                    merged.push_back(*a++);
                } else if (a == slot.counts.end() || b->first < a->first) {
                    merged.push_back(*b++);
                } else {
                    merged.emplace_back(a->first, a->second + b->second);
                    ++a;
                    ++b;
                }
            }
            merged.shrink_to_fit();
            slot.counts = std::move(merged);
        }
    }
    expire(slots_.back().index);
}

WindowStats SlidingWindow::query(rules::TimePoint now, std::chrono::nanoseconds window) const {
    WindowStats stats(settings_);
    if (window.count() <= 0) {
        return stats;
    }
    const std::int64_t w = slot_width_.count();
    const std::int64_t n = window.count() / w + (window.count() % w != 0 ? 1 : 0);
    const std::int64_t max_ns = std::numeric_limits<std::int64_t>::max();
    stats.covered = std::chrono::nanoseconds{n > max_ns / w ? max_ns : n * w};
    const std::int64_t last = slotIndex(now);
    const std::int64_t first = last - n + 1;
    auto it = std::lower_bound(slots_.begin(), slots_.end(), first,
                               [](const Slot& s, std::int64_t i) { return s.index < i; });
    for (; it != slots_.end() && it->index <= last; ++it) {
        stats.events += it->events;
        stats.errors += it->errors;
        for (const auto& [index, count] : it->counts) {
            stats.latency.addAtIndex(index, count);
        }
    }
    return stats;
}

std::size_t SlidingWindow::memoryBytes() const {
    std::size_t bytes = sizeof(*this) + slots_.size() * sizeof(Slot);
    for (const Slot& slot : slots_) {
        bytes += slot.counts.capacity() * sizeof(slot.counts[0]);
    }
    return bytes;
}

}  // namespace rollguard::agent
