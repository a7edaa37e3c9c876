#include "rollguard/agent/sliding_window.h"

#include "store/series_state.h"
#include "util/bytes.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace rollguard::agent {

namespace {

void mergeInto(IntervalStats& into, const IntervalStats& from) {
    into.events += from.events;
    into.errors += from.errors;
    into.value_sum += from.value_sum;
    into.value_count += from.value_count;
    if (from.last_value) {
        into.last_value = from.last_value;  // `from` is the later interval
    }
    into.latency.add(from.latency);
}

std::int64_t toNs(rules::TimePoint t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

// ---------------------------------------------------------------------------------------
// IntervalStats

IntervalStats::IntervalStats(const HistogramSettings& settings)
    : latency(settings.lowest, settings.highest, settings.sigfigs) {}

void IntervalStats::reset() {
    events = 0;
    errors = 0;
    value_sum = 0.0;
    value_count = 0;
    last_value.reset();
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

void IntervalRecorder::recordValue(double value) {
    if (!std::isfinite(value)) {
        return;
    }
    std::lock_guard lock(mutex_);
    current_.value_sum += value;
    ++current_.value_count;
    current_.last_value = value;
}

void IntervalRecorder::recordBatch(const IntervalStats& batch) {
    std::lock_guard lock(mutex_);
    mergeInto(current_, batch);
}

void IntervalRecorder::recordBatch(const IntervalStats& batch, const SourcePositions& positions) {
    std::lock_guard lock(mutex_);
    mergeInto(current_, batch);
    positions_ = positions;
    positions_fresh_ = true;
}

void IntervalRecorder::recordBatch(const IntervalStats& batch, const KeyedBatch& keyed,
                                   const SourcePositions& positions) {
    std::lock_guard lock(mutex_);
    mergeInto(current_, batch);
    for (std::size_t i = 0; i < keyed.used_; ++i) {
        const KeyedBatch::Entry& e = keyed.entries_[i];
        const std::optional<rules::TimePoint> at =
            e.has_bucket ? std::optional(rules::TimePoint{std::chrono::duration_cast<rules::TimePoint::duration>(
                               std::chrono::nanoseconds{e.bucket_ns})})
                         : std::nullopt;
        auto it = std::find_if(parts_.begin(), parts_.end(),
                               [&](const RecordedPart& p) { return p.stream == e.stream && p.at == at; });
        if (it == parts_.end()) {
            if (spare_.empty()) {
                parts_.push_back(RecordedPart{e.stream, at, IntervalStats(settings_)});
            } else {
                parts_.push_back(RecordedPart{e.stream, at, std::move(spare_.back())});
                spare_.pop_back();
            }
            it = parts_.end() - 1;
        }
        it->stats.events += e.events;
        it->stats.errors += e.errors;
        for (const std::int64_t v : e.latencies) {
            it->stats.latency.record(v);
        }
    }
    positions_ = positions;
    positions_fresh_ = true;
}

IntervalStats IntervalRecorder::take(SourcePositions* positions) {
    // The fresh interval is allocated outside the lock so writers only wait for a swap.
    IntervalStats fresh(settings_);
    std::vector<RecordedPart> parts;
    {
        std::lock_guard lock(mutex_);
        std::swap(fresh, current_);
        std::swap(parts, parts_);
        if (positions != nullptr && positions_fresh_) {
            *positions = positions_;
            positions_fresh_ = false;
        }
    }
    for (auto& p : parts) {
        if (p.stream == 0) {
            p.stats.latency.indexNonZero();
            mergeInto(fresh, p.stats);
        }
    }
    fresh.latency.indexNonZero();
    return fresh;
}

std::vector<RecordedPart> IntervalRecorder::takeParts(SourcePositions* positions) {
    // Taken at every evaluation (ten times a second), so the common cases allocate
    // nothing: nothing recorded returns at once, keyed data alone (labels, event time)
    // needs no fresh stream-0 interval, and a fresh one is a recycled spare when there is
    // one. Only without a spare is one allocated, outside the lock.
    std::vector<RecordedPart> parts;
    std::optional<IntervalStats> fresh;
    const auto takeLocked = [&] {
        if (fresh) {
            std::swap(*fresh, current_);
        }
        std::swap(parts, parts_);
        if (positions != nullptr && positions_fresh_) {
            *positions = positions_;
            positions_fresh_ = false;
        }
    };
    bool taken = false;
    {
        std::lock_guard lock(mutex_);
        if (current_.empty() && parts_.empty() && !(positions != nullptr && positions_fresh_)) {
            return {};
        }
        if (!current_.empty() && !spare_.empty()) {
            fresh.emplace(std::move(spare_.back()));
            spare_.pop_back();
        }
        if (current_.empty() || fresh) {
            takeLocked();
            taken = true;
        }
    }
    if (!taken) {
        fresh.emplace(settings_);
        std::lock_guard lock(mutex_);
        takeLocked();
    }
    // Indexed once here, so each merge of a part downstream (rings, aggregates, totals)
    // and its reset when recycled cost its recorded counts, not its span.
    for (auto& p : parts) {
        p.stats.latency.indexNonZero();
    }
    if (fresh && !fresh->empty()) {
        fresh->latency.indexNonZero();
        parts.insert(parts.begin(), RecordedPart{0, std::nullopt, std::move(*fresh)});
    }
    return parts;
}

void IntervalRecorder::recycle(std::vector<IntervalStats>& spent) {
    // A tick of event time brings one new key per stream; a few spares cover that.
    constexpr std::size_t kMaxSpares = 8;
    std::vector<IntervalStats> ready;
    for (auto& s : spent) {
        if (ready.size() == kMaxSpares) {
            break;
        }
        const HdrHistogram& h = s.latency;
        if (h.lowestTrackableValue() == settings_.lowest && h.highestTrackableValue() == settings_.highest &&
            h.significantFigures() == settings_.sigfigs) {
            s.reset();
            ready.push_back(std::move(s));
        }
    }
    spent.clear();
    std::lock_guard lock(mutex_);
    while (!ready.empty() && spare_.size() < kMaxSpares) {
        spare_.push_back(std::move(ready.back()));
        ready.pop_back();
    }
}

// ---------------------------------------------------------------------------------------
// KeyedBatch

void KeyedBatch::add(std::uint32_t stream, std::optional<std::int64_t> bucket_ns, std::int64_t latency_units,
                     bool error) {
    const bool has_bucket = bucket_ns.has_value();
    const std::int64_t bucket = bucket_ns.value_or(0);
    const auto matches = [&](const Entry& e) {
        return e.stream == stream && e.has_bucket == has_bucket && e.bucket_ns == bucket;
    };
    Entry* hit = nullptr;
    if (last_ < used_ && matches(entries_[last_])) {
        hit = &entries_[last_];
    } else {
        for (std::size_t i = 0; i < used_; ++i) {
            if (matches(entries_[i])) {
                hit = &entries_[i];
                last_ = i;
                break;
            }
        }
    }
    if (hit == nullptr) {
        if (used_ == entries_.size()) {
            entries_.emplace_back();
        }
        last_ = used_++;
        hit = &entries_[last_];
        hit->stream = stream;
        hit->has_bucket = has_bucket;
        hit->bucket_ns = bucket;
        hit->events = 0;
        hit->errors = 0;
        hit->latencies.clear();
    }
    ++hit->events;
    if (error) {
        ++hit->errors;
    }
    if (latency_units >= 0) {
        hit->latencies.push_back(latency_units);
    }
}

void KeyedBatch::clear() {
    used_ = 0;
    last_ = 0;
}

// ---------------------------------------------------------------------------------------
// SparseCounts

namespace {

void appendVarint(std::vector<std::uint8_t>& out, std::uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<std::uint8_t>(v | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<std::uint8_t>(v));
}

}  // namespace

SparseCounts::SparseCounts(const HdrHistogram& h) {
    std::int64_t previous = -1;
    h.visitNonZero([&](std::int32_t index, std::int64_t count) {
        appendVarint(bytes_, static_cast<std::uint64_t>(index - previous));
        appendVarint(bytes_, static_cast<std::uint64_t>(count));
        previous = index;
        ++entries_;
    });
    bytes_.shrink_to_fit();
}

std::optional<SparseCounts> SparseCounts::fromRaw(std::string_view raw, std::int32_t counts_length) {
    SparseCounts out;
    ByteReader reader(raw);
    std::int64_t index = -1;
    while (!reader.done()) {
        std::uint64_t delta = 0;
        std::uint64_t count = 0;
        if (!reader.varint(delta) || !reader.varint(count) || delta == 0 || count == 0 ||
            delta > static_cast<std::uint64_t>(counts_length) ||
            count > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            return std::nullopt;
        }
        index += static_cast<std::int64_t>(delta);
        if (index >= counts_length) {
            return std::nullopt;
        }
        ++out.entries_;
    }
    out.bytes_.assign(raw.begin(), raw.end());
    return out;
}

// ---------------------------------------------------------------------------------------
// WindowView

WindowView::WindowView(std::chrono::nanoseconds length, std::chrono::nanoseconds slot_width, std::size_t ring,
                       const HistogramSettings& settings, const std::deque<ValuePoint>* points)
    : length_(length),
      slot_width_(slot_width),
      slots_((length.count() + slot_width.count() - 1) / slot_width.count()),
      ring_(ring),
      excluded_up_to_(std::numeric_limits<std::int64_t>::min()),
      units_per_second_(settings.units_per_second),
      aggregate_(settings),
      points_(points) {}

double WindowView::quantileSeconds(double q) const {
    for (const auto& c : quantiles_) {
        if (c.generation == generation_ && c.q == q) {
            return c.seconds;
        }
    }
    const double seconds = static_cast<double>(aggregate_.latency.valueAtPercentile(q * 100.0)) / units_per_second_;
    quantiles_[next_quantile_] = CachedQuantile{q, generation_, seconds};
    next_quantile_ = (next_quantile_ + 1) % quantiles_.size();
    return seconds;
}

double WindowView::meanSeconds() const {
    return aggregate_.latency.mean() / units_per_second_;
}

double WindowView::minSeconds() const {
    return static_cast<double>(aggregate_.latency.min()) / units_per_second_;
}

double WindowView::maxSeconds() const {
    return static_cast<double>(aggregate_.latency.max()) / units_per_second_;
}

double WindowView::stddevSeconds() const {
    return aggregate_.latency.stddev() / units_per_second_;
}

void WindowView::forEachBucket(const std::function<void(double value_seconds, std::int64_t count)>& fn) const {
    const HdrHistogram& h = aggregate_.latency;
    h.forEachNonZero([&](std::int32_t index, std::int64_t count) {
        fn(static_cast<double>(h.medianEquivalentValue(h.valueAtIndex(index))) / units_per_second_, count);
    });
}

std::optional<std::int64_t> WindowView::startNs() const {
    if (excluded_up_to_ == std::numeric_limits<std::int64_t>::min()) {
        return std::nullopt;
    }
    return (excluded_up_to_ + 1) * slot_width_.count();
}

std::deque<ValuePoint>::const_iterator WindowView::firstPoint() const {
    const auto start = startNs();
    if (!start) {
        return points_->begin();
    }
    return std::lower_bound(points_->begin(), points_->end(), *start,
                            [](const ValuePoint& p, std::int64_t ns) { return p.ns < ns; });
}

void WindowView::forEach(const std::function<void(double seconds_since_window_start, double value)>& fn) const {
    auto it = firstPoint();
    if (it == points_->end()) {
        return;
    }
    // Without a bound yet, the oldest point is the start: t only matters relatively.
    const std::int64_t origin = startNs().value_or(it->ns);
    for (; it != points_->end(); ++it) {
        fn(static_cast<double>(it->ns - origin) / 1e9, it->value);
    }
}

std::size_t WindowView::pointCount() const {
    return static_cast<std::size_t>(points_->end() - firstPoint());
}

std::optional<double> WindowView::lastValue() const {
    if (points_->empty()) {
        return std::nullopt;
    }
    const auto start = startNs();
    if (start && points_->back().ns < *start) {
        return std::nullopt;
    }
    return points_->back().value;
}

rules::SeriesStats WindowView::asSeriesStats() const {
    rules::SeriesStats s;
    s.events = aggregate_.events;
    s.errors = aggregate_.errors;
    s.window = covered_;
    s.latency = this;
    s.value_count = aggregate_.value_count;
    s.value_sum = aggregate_.value_sum;
    s.last_value = lastValue();
    s.points = this;
    return s;
}

// ---------------------------------------------------------------------------------------
// Series

namespace {

using detail::SealedSlot;

void subtractSlot(IntervalStats& from, const SealedSlot& slot) {
    from.events -= slot.events;
    from.errors -= slot.errors;
    from.value_count -= slot.value_count;
    // Exact zero once no value is left, so float rounding cannot accumulate forever.
    from.value_sum = from.value_count == 0 ? 0.0 : from.value_sum - slot.value_sum;
    from.latency.adjustOverflowCount(-slot.overflow);
    slot.counts.forEach([&](std::int32_t index, std::int64_t count) { from.latency.subtractAtIndex(index, count); });
}

void addSlot(IntervalStats& to, const SealedSlot& slot) {
    to.events += slot.events;
    to.errors += slot.errors;
    to.value_sum += slot.value_sum;
    to.value_count += slot.value_count;
    to.latency.adjustOverflowCount(slot.overflow);
    slot.counts.forEach([&](std::int32_t index, std::int64_t count) { to.latency.addAtIndex(index, count); });
}

// Slot widths a window may use; past the end, whole hours.
constexpr std::chrono::milliseconds kSlotLadder[] = {
    std::chrono::milliseconds{100},   std::chrono::milliseconds{200},    std::chrono::milliseconds{250},
    std::chrono::milliseconds{500},   std::chrono::seconds{1},           std::chrono::seconds{2},
    std::chrono::seconds{5},          std::chrono::seconds{10},          std::chrono::seconds{15},
    std::chrono::seconds{30},         std::chrono::minutes{1},           std::chrono::minutes{2},
    std::chrono::minutes{5},          std::chrono::minutes{10},          std::chrono::minutes{15},
    std::chrono::minutes{30},         std::chrono::hours{1},
};
constexpr std::int64_t kMaxSlotsPerWindow = 100;

std::int64_t floorDiv(std::int64_t a, std::int64_t b) {
    const std::int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

}  // namespace

struct Series::Ring {
    Ring(std::chrono::nanoseconds w, const HistogramSettings& settings) : width(w), open(settings) {}

    std::chrono::nanoseconds width;
    std::int64_t max_slots = 0;  // the longest window reading this ring
    std::optional<std::int64_t> open_index;
    IntervalStats open;  // the slot being filled, dense
    std::deque<SealedSlot> sealed;  // ascending index

    void seal() {
        if (open.empty()) {
            return;
        }
        SealedSlot slot;
        slot.index = *open_index;
        slot.events = open.events;
        slot.errors = open.errors;
        slot.value_sum = open.value_sum;
        slot.value_count = open.value_count;
        slot.overflow = open.latency.overflowCount();
        slot.counts = SparseCounts(open.latency);
        sealed.push_back(std::move(slot));
        open.reset();
    }

    /// First sealed slot with index > i.
    std::deque<SealedSlot>::const_iterator after(std::int64_t i) const {
        return std::upper_bound(sealed.begin(), sealed.end(), i,
                                [](std::int64_t v, const SealedSlot& s) { return v < s.index; });
    }
};

Series::Series(const HistogramSettings& settings, std::chrono::nanoseconds stamp_span)
    : settings_(settings), stamp_span_(stamp_span) {
    // Validates the settings once, up front, rather than on first data.
    HdrHistogram probe(settings.lowest, settings.highest, settings.sigfigs);
    if (!(settings.units_per_second > 0.0)) {
        throw std::invalid_argument("Series: units_per_second must be > 0");
    }
}

Series::~Series() = default;

std::chrono::nanoseconds Series::slotWidthFor(std::chrono::nanoseconds length) {
    for (const auto width : kSlotLadder) {
        const std::chrono::nanoseconds w = width;
        if ((length.count() + w.count() - 1) / w.count() <= kMaxSlotsPerWindow) {
            return w;
        }
    }
    const std::chrono::nanoseconds hour = std::chrono::hours{1};
    const std::int64_t hours = (length.count() / kMaxSlotsPerWindow + hour.count() - 1) / hour.count();
    return hour * std::max<std::int64_t>(1, hours);
}

std::int64_t Series::slotIndex(const Ring& ring, rules::TimePoint t) const {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    return floorDiv(ns, ring.width.count());
}

WindowHandle Series::addWindow(std::chrono::nanoseconds length) {
    if (length.count() <= 0) {
        throw std::invalid_argument("Series::addWindow: the length must be > 0");
    }
    for (std::size_t i = 0; i < windows_.size(); ++i) {
        if (windows_[i]->length() == length) {
            return i;
        }
    }
    const auto width = slotWidthFor(length);
    std::size_t ring_index = rings_.size();
    for (std::size_t i = 0; i < rings_.size(); ++i) {
        if (rings_[i]->width == width) {
            ring_index = i;
        }
    }
    if (ring_index == rings_.size()) {
        rings_.push_back(std::make_unique<Ring>(width, settings_));
        if (newest_) {
            rings_.back()->open_index = slotIndex(*rings_.back(), *newest_);
        }
    }
    Ring& ring = *rings_[ring_index];
    windows_.push_back(std::unique_ptr<WindowView>(new WindowView(length, width, ring_index, settings_, &points_)));
    WindowView& w = *windows_.back();
    ring.max_slots = std::max(ring.max_slots, w.slots_);

    // A window added to a ring that already holds data starts with what the ring has.
    rebuild(w);
    return windows_.size() - 1;
}

const WindowView& Series::window(WindowHandle handle) const {
    return *windows_.at(handle);
}

void Series::advance(rules::TimePoint now) {
    // Time never runs backwards inside the store: a step back is clamped to the newest time.
    const rules::TimePoint t = newest_ ? std::max(now, *newest_) : now;
    newest_ = t;
    if (!first_seen_) {
        first_seen_ = t;
    }
    for (auto& ring : rings_) {
        const std::int64_t s = slotIndex(*ring, t);
        if (ring->open_index && s > *ring->open_index) {
            ring->seal();
        }
        if (!ring->open_index || s > *ring->open_index) {
            ring->open_index = s;
        }
    }
    for (auto& w : windows_) {
        Ring& ring = *rings_[w->ring_];
        const std::int64_t s = *ring.open_index;
        const std::int64_t boundary = s - w->slots_;
        if (boundary > w->excluded_up_to_) {
            for (auto it = ring.after(w->excluded_up_to_); it != ring.sealed.end() && it->index <= boundary; ++it) {
                subtractSlot(w->aggregate_, *it);
            }
            w->excluded_up_to_ = boundary;
            ++w->generation_;
        }
        const rules::TimePoint window_start{std::chrono::duration_cast<rules::TimePoint::duration>(
            w->slot_width_ * (boundary + 1))};
        rules::TimePoint from = window_start;
        if (stamp_span_.count() > 0) {
            // The stamps in [window_start, t] fall on t, t - span, ...; the oldest of them
            // stands for the span before it.
            const auto span = std::chrono::duration_cast<rules::TimePoint::duration>(stamp_span_);
            from = t - ((t - window_start) / span + 1) * span;
        }
        const rules::TimePoint start = std::max(from, *first_seen_);
        w->covered_ = std::chrono::duration_cast<std::chrono::nanoseconds>(t - start);
    }
    for (auto& ring : rings_) {
        const std::int64_t keep_after = *ring->open_index - ring->max_slots;
        while (!ring->sealed.empty() && ring->sealed.front().index <= keep_after) {
            ring->sealed.pop_front();
        }
    }
    prunePoints();
}

void Series::prunePoints() {
    if (windows_.empty()) {
        points_.clear();
        return;
    }
    // The oldest instant any window still covers; a window without a bound keeps all.
    // (A plain value and a flag, not std::optional: g++ 12 at -O1 warns that an optional
    // read under its own check "may be used uninitialized".)
    std::int64_t keep_from = std::numeric_limits<std::int64_t>::max();
    bool bounded = true;
    for (const auto& w : windows_) {
        const auto start = w->startNs();
        if (!start) {
            bounded = false;
            break;
        }
        keep_from = std::min(keep_from, *start);
    }
    if (bounded) {
        while (!points_.empty() && points_.front().ns < keep_from) {
            points_.pop_front();
        }
    }
    while (points_.size() > kMaxPoints) {
        points_.pop_front();
        ++points_dropped_;
    }
}

void Series::insertPoint(std::int64_t ns, double value) {
    points_changed_from_ = points_changed_from_ ? std::min(*points_changed_from_, ns) : ns;
    if (!points_.empty() && points_.back().ns <= ns) {
        if (points_.back().ns == ns) {
            points_.back().value = value;
        } else {
            points_.push_back(ValuePoint{ns, value});
        }
    } else {
        auto it = std::lower_bound(points_.begin(), points_.end(), ns,
                                   [](const ValuePoint& p, std::int64_t v) { return p.ns < v; });
        if (it != points_.end() && it->ns == ns) {
            it->value = value;
        } else {
            points_.insert(it, ValuePoint{ns, value});
        }
    }
    prunePoints();
}

void Series::checkSettings(const IntervalStats& interval) const {
    const HdrHistogram& h = interval.latency;
    if (h.lowestTrackableValue() != settings_.lowest || h.highestTrackableValue() != settings_.highest ||
        h.significantFigures() != settings_.sigfigs) {
        throw std::invalid_argument("Series::add: the interval's histogram settings differ from the series'");
    }
}

void Series::addAt(rules::TimePoint at, const IntervalStats& interval) {
    // Event-time data stamped `at` stands for the span before it.
    const rules::TimePoint stands_from = at - std::chrono::duration_cast<rules::TimePoint::duration>(stamp_span_);
    if (!newest_ || at >= *newest_) {
        if (!first_seen_ || stands_from < *first_seen_) {
            first_seen_ = stands_from;
        }
        add(at, interval);
        return;
    }
    checkSettings(interval);
    if (interval.last_value && std::isfinite(*interval.last_value) && !windows_.empty()) {
        // A point no window covers is dropped again at once by the pruning.
        insertPoint(toNs(at), *interval.last_value);
    }
    for (std::size_t r = 0; r < rings_.size(); ++r) {
        Ring& ring = *rings_[r];
        const std::int64_t index = slotIndex(ring, at);
        const std::int64_t open = *ring.open_index;
        if (index <= open - ring.max_slots) {
            continue;  // the ring no longer holds that slot
        }
        if (index == open) {
            mergeInto(ring.open, interval);
        } else {
            // Re-encode the sealed slot with the late data merged in: the same bytes as
            // if the slot had been sealed with all of it.
            auto it = std::lower_bound(ring.sealed.begin(), ring.sealed.end(), index,
                                       [](const SealedSlot& s, std::int64_t v) { return s.index < v; });
            if (!scratch_) {
                scratch_ = std::make_unique<IntervalStats>(settings_);
            }
            IntervalStats& dense = *scratch_;
            dense.reset();
            if (it != ring.sealed.end() && it->index == index) {
                addSlot(dense, *it);
            } else {
                it = ring.sealed.insert(it, SealedSlot{});
            }
            mergeInto(dense, interval);
            it->index = index;
            it->events = dense.events;
            it->errors = dense.errors;
            it->value_sum = dense.value_sum;
            it->value_count = dense.value_count;
            it->overflow = dense.latency.overflowCount();
            it->counts = SparseCounts(dense.latency);
            it->saved = false;  // the next checkpoint journal carries it again
        }
        for (auto& w : windows_) {
            if (w->ring_ == r && index > w->excluded_up_to_) {
                mergeInto(w->aggregate_, interval);
                ++w->generation_;
            }
        }
    }
    if (stands_from < *first_seen_) {
        first_seen_ = stands_from;
        advance(*newest_);  // recomputes what each window covers
    }
}

void Series::add(rules::TimePoint now, const IntervalStats& interval) {
    checkSettings(interval);
    advance(now);
    if (interval.last_value && std::isfinite(*interval.last_value) && !windows_.empty()) {
        insertPoint(toNs(*newest_), *interval.last_value);
    }
    for (auto& ring : rings_) {
        mergeInto(ring->open, interval);
    }
    for (auto& w : windows_) {
        mergeInto(w->aggregate_, interval);
        ++w->generation_;
    }
}

namespace {

// Format 1: settings, times and each ring's slots. Format 2 (value points): format 1
// followed by the points: their count, then the first time (zig-zag ns since the epoch)
// and each later one as the (positive) ns since the one before, each with its value.
// Format-1 bytes still restore, without points.
constexpr std::uint64_t kSeriesFormatSlots = 1;
constexpr std::uint64_t kSeriesFormat = 2;
// Changes (serializeChanges), format 1: the settings and times as in format 2, then per
// ring its width, its open slot, the index up to which its sealed slots are gone and the
// slots sealed or re-encoded since the last save; then the points: the time before which
// they are gone, and those at or after the earliest point added or replaced since the
// last save.
constexpr std::uint64_t kChangesFormat = 1;

void writeSlot(ByteWriter& w, std::int64_t index, std::int64_t events, std::int64_t errors, double value_sum,
               std::int64_t value_count, std::int64_t overflow, std::string_view counts) {
    w.svarint(index);
    w.varint(static_cast<std::uint64_t>(events));
    w.varint(static_cast<std::uint64_t>(errors));
    w.f64(value_sum);
    w.varint(static_cast<std::uint64_t>(value_count));
    w.varint(static_cast<std::uint64_t>(overflow));
    w.bytes(counts);
}

void writeSlot(ByteWriter& w, const SealedSlot& slot) {
    writeSlot(w, slot.index, slot.events, slot.errors, slot.value_sum, slot.value_count, slot.overflow,
              slot.counts.raw());
}

bool readSlot(ByteReader& r, std::int32_t counts_length, SealedSlot& slot) {
    std::uint64_t events = 0;
    std::uint64_t errors = 0;
    std::uint64_t value_count = 0;
    std::uint64_t overflow = 0;
    std::string_view counts;
    if (!r.svarint(slot.index) || !r.varint(events) || !r.varint(errors) || !r.f64(slot.value_sum) ||
        !r.varint(value_count) || !r.varint(overflow) || !r.bytes(counts)) {
        return false;
    }
    constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (events > kMax || errors > events || value_count > kMax || overflow > kMax) {
        return false;
    }
    auto decoded = SparseCounts::fromRaw(counts, counts_length);
    if (!decoded) {
        return false;
    }
    slot.events = static_cast<std::int64_t>(events);
    slot.errors = static_cast<std::int64_t>(errors);
    slot.value_count = static_cast<std::int64_t>(value_count);
    slot.overflow = static_cast<std::int64_t>(overflow);
    slot.counts = std::move(*decoded);
    return true;
}

void writeTime(ByteWriter& w, const std::optional<rules::TimePoint>& t) {
    w.varint(t ? 1 : 0);
    if (t) {
        w.svarint(std::chrono::duration_cast<std::chrono::nanoseconds>(t->time_since_epoch()).count());
    }
}

bool readTime(ByteReader& r, std::optional<rules::TimePoint>& t) {
    std::uint64_t has = 0;
    if (!r.varint(has) || has > 1) {
        return false;
    }
    t.reset();
    if (has == 1) {
        std::int64_t ns = 0;
        if (!r.svarint(ns)) {
            return false;
        }
        t = rules::TimePoint{std::chrono::duration_cast<rules::TimePoint::duration>(std::chrono::nanoseconds{ns})};
    }
    return true;
}

void writeSettings(ByteWriter& w, const HistogramSettings& settings) {
    w.varint(static_cast<std::uint64_t>(settings.lowest));
    w.varint(static_cast<std::uint64_t>(settings.highest));
    w.varint(static_cast<std::uint64_t>(settings.sigfigs));
    w.f64(settings.units_per_second);
}

// The settings and the counts length of their histograms; false when they are not
// settings a histogram accepts.
bool readSettings(ByteReader& r, HistogramSettings& settings, std::int32_t& counts_length) {
    std::uint64_t lowest = 0;
    std::uint64_t highest = 0;
    std::uint64_t sigfigs = 0;
    if (!r.varint(lowest) || !r.varint(highest) || !r.varint(sigfigs) || !r.f64(settings.units_per_second) ||
        lowest > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
        highest > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) || sigfigs > 5) {
        return false;
    }
    settings.lowest = static_cast<std::int64_t>(lowest);
    settings.highest = static_cast<std::int64_t>(highest);
    settings.sigfigs = static_cast<int>(sigfigs);
    // The counts length of the last settings seen: building a histogram to learn it
    // allocates and zeroes its whole counts array, and a journal replay asks per series.
    thread_local std::optional<std::pair<HistogramSettings, std::int32_t>> last;
    if (last && last->first.lowest == settings.lowest && last->first.highest == settings.highest &&
        last->first.sigfigs == settings.sigfigs) {
        counts_length = last->second;
        return true;
    }
    try {
        counts_length = HdrHistogram(settings.lowest, settings.highest, settings.sigfigs).countsLength();
    } catch (const std::exception&) {
        return false;
    }
    last = std::make_pair(settings, counts_length);
    return true;
}

bool readWidth(ByteReader& r, std::int64_t& width) {
    std::uint64_t w = 0;
    if (!r.varint(w) || w == 0 || w > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return false;
    }
    width = static_cast<std::int64_t>(w);
    return true;
}

// The header both encodings of a series (whole, and its changes) start with: the format,
// the histogram settings with their counts length, the first and newest times, the number
// of rings. `Out` is SavedSeries or SeriesChanges.
struct SeriesHeader {
    std::uint64_t format = 0;
    std::int32_t counts_length = 0;
    std::uint64_t ring_count = 0;
};
template <typename Out>
bool readHeader(ByteReader& r, Out& out, SeriesHeader& h) {
    return r.varint(h.format) && readSettings(r, out.settings, h.counts_length) && readTime(r, out.first_seen) &&
           readTime(r, out.newest) && r.varint(h.ring_count) && h.ring_count <= 1024;
}

// A count (at most `bound`), then that many slots in ascending index order.
template <typename Slots>
bool readSlots(ByteReader& r, std::int32_t counts_length, std::size_t bound, Slots& out) {
    std::uint64_t count = 0;
    if (!r.varint(count) || count > bound) {
        return false;
    }
    for (std::uint64_t i = 0; i < count; ++i) {
        SealedSlot slot;
        if (!readSlot(r, counts_length, slot) || (!out.empty() && slot.index <= out.back().index)) {
            return false;
        }
        out.push_back(std::move(slot));
    }
    return true;
}

bool readPoint(ByteReader& r, ValuePoint& p) {
    return r.svarint(p.ns) && r.f64(p.value) && std::isfinite(p.value);
}

}  // namespace

namespace detail {

bool sameSettings(const HistogramSettings& a, const HistogramSettings& b) {
    return a.lowest == b.lowest && a.highest == b.highest && a.sigfigs == b.sigfigs &&
           a.units_per_second == b.units_per_second;
}

std::optional<SavedSeries> parseSeries(std::string_view bytes) {
    ByteReader r(bytes);
    SavedSeries out;
    SeriesHeader h;
    if (!readHeader(r, out, h) || (h.format != kSeriesFormat && h.format != kSeriesFormatSlots)) {
        return std::nullopt;
    }
    const std::int32_t counts_length = h.counts_length;
    out.rings.resize(h.ring_count);
    for (auto& ring : out.rings) {
        std::uint64_t has_open = 0;
        if (!readWidth(r, ring.width) || !r.varint(has_open) || has_open > 1) {
            return std::nullopt;
        }
        if (has_open == 1) {
            SealedSlot open;
            if (!readSlot(r, counts_length, open)) {
                return std::nullopt;
            }
            ring.open = std::move(open);
        }
        if (!readSlots(r, counts_length, bytes.size(), ring.sealed)) {
            return std::nullopt;
        }
    }
    if (h.format == kSeriesFormat) {
        std::uint64_t point_count = 0;
        // Each point takes at least 9 bytes: a bound on the count before reading them.
        if (!r.varint(point_count) || point_count > bytes.size() / 9) {
            return std::nullopt;
        }
        for (std::uint64_t i = 0; i < point_count; ++i) {
            ValuePoint p;
            if (i == 0) {
                if (!r.svarint(p.ns)) {
                    return std::nullopt;
                }
            } else {
                std::uint64_t delta = 0;
                const std::int64_t previous = out.points.back().ns;
                // Unsigned, so the headroom above a negative time cannot overflow.
                const std::uint64_t headroom = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) -
                                               static_cast<std::uint64_t>(previous);
                if (!r.varint(delta) || delta == 0 || delta > headroom) {
                    return std::nullopt;
                }
                p.ns = static_cast<std::int64_t>(static_cast<std::uint64_t>(previous) + delta);
            }
            if (!r.f64(p.value) || !std::isfinite(p.value)) {
                return std::nullopt;
            }
            out.points.push_back(p);
        }
    }
    if (!r.done()) {
        return std::nullopt;
    }
    return out;
}

std::string encodeSeries(const SavedSeries& series) {
    constexpr std::size_t kSlotFields = 68;  // as in Series::serialize
    std::size_t bound = 64 + series.points.size() * 18;
    for (const auto& ring : series.rings) {
        bound += 32 + (ring.open ? kSlotFields + ring.open->counts.raw().size() : 0);
        for (const auto& slot : ring.sealed) {
            bound += kSlotFields + slot.counts.raw().size();
        }
    }
    ByteWriter w;
    w.reserve(bound);
    w.varint(kSeriesFormat);
    writeSettings(w, series.settings);
    writeTime(w, series.first_seen);
    writeTime(w, series.newest);
    w.varint(series.rings.size());
    for (const auto& ring : series.rings) {
        w.varint(static_cast<std::uint64_t>(ring.width));
        w.varint(ring.open ? 1 : 0);
        if (ring.open) {
            writeSlot(w, *ring.open);
        }
        w.varint(ring.sealed.size());
        for (const auto& slot : ring.sealed) {
            writeSlot(w, slot);
        }
    }
    w.varint(series.points.size());
    std::int64_t previous = 0;
    for (std::size_t i = 0; i < series.points.size(); ++i) {
        const ValuePoint& p = series.points[i];
        if (i == 0) {
            w.svarint(p.ns);
        } else {
            w.varint(static_cast<std::uint64_t>(p.ns) - static_cast<std::uint64_t>(previous));
        }
        w.f64(p.value);
        previous = p.ns;
    }
    return w.take();
}

std::optional<SeriesChanges> parseSeriesChanges(std::string_view bytes) {
    ByteReader r(bytes);
    SeriesChanges out;
    SeriesHeader h;
    if (!readHeader(r, out, h) || h.format != kChangesFormat) {
        return std::nullopt;
    }
    const std::int32_t counts_length = h.counts_length;
    out.rings.resize(h.ring_count);
    for (auto& ring : out.rings) {
        std::uint64_t has_open = 0;
        if (!readWidth(r, ring.width) || !r.varint(has_open) || has_open > 1) {
            return std::nullopt;
        }
        if (has_open == 1) {
            SealedSlot open;
            std::int64_t dropped = 0;
            if (!readSlot(r, counts_length, open) || !r.svarint(dropped)) {
                return std::nullopt;
            }
            ring.open = std::move(open);
            ring.dropped_up_to = dropped;
        }
        if (!readSlots(r, counts_length, bytes.size(), ring.slots)) {
            return std::nullopt;
        }
    }
    std::uint64_t has_points = 0;
    std::uint64_t has_changed = 0;
    if (!r.varint(has_points) || has_points > 1) {
        return std::nullopt;
    }
    if (has_points == 1) {
        std::int64_t kept_from = 0;
        if (!r.svarint(kept_from)) {
            return std::nullopt;
        }
        out.points_kept_from = kept_from;
    }
    if (!r.varint(has_changed) || has_changed > 1) {
        return std::nullopt;
    }
    if (has_changed == 1) {
        std::int64_t from = 0;
        std::uint64_t count = 0;
        if (!r.svarint(from) || !r.varint(count) || count > bytes.size() / 9) {
            return std::nullopt;
        }
        out.points_from = from;
        for (std::uint64_t i = 0; i < count; ++i) {
            ValuePoint p;
            if (!readPoint(r, p) || p.ns < from || (!out.points.empty() && p.ns <= out.points.back().ns)) {
                return std::nullopt;
            }
            out.points.push_back(p);
        }
    }
    if (!r.done()) {
        return std::nullopt;
    }
    return out;
}

void applyChanges(SavedSeries& series, SeriesChanges&& changes) {
    series.first_seen = changes.first_seen;
    series.newest = changes.newest;
    for (auto& c : changes.rings) {
        auto ring = std::find_if(series.rings.begin(), series.rings.end(),
                                 [&](const SavedRing& r) { return r.width == c.width; });
        if (ring == series.rings.end()) {
            series.rings.push_back(SavedRing{c.width, std::nullopt, {}});
            ring = series.rings.end() - 1;
        }
        ring->open = std::move(c.open);
        if (c.dropped_up_to) {
            while (!ring->sealed.empty() && ring->sealed.front().index <= *c.dropped_up_to) {
                ring->sealed.pop_front();
            }
        }
        for (auto& slot : c.slots) {
            if (ring->sealed.empty() || ring->sealed.back().index < slot.index) {
                ring->sealed.push_back(std::move(slot));
                continue;
            }
            auto it = std::lower_bound(ring->sealed.begin(), ring->sealed.end(), slot.index,
                                       [](const SealedSlot& s, std::int64_t v) { return s.index < v; });
            if (it->index == slot.index) {
                *it = std::move(slot);
            } else {
                ring->sealed.insert(it, std::move(slot));
            }
        }
    }
    if (!changes.points_kept_from) {
        series.points.clear();
    } else {
        while (!series.points.empty() && series.points.front().ns < *changes.points_kept_from) {
            series.points.pop_front();
        }
    }
    if (changes.points_from) {
        auto it = std::lower_bound(series.points.begin(), series.points.end(), *changes.points_from,
                                   [](const ValuePoint& p, std::int64_t v) { return p.ns < v; });
        series.points.erase(it, series.points.end());
        series.points.insert(series.points.end(), changes.points.begin(), changes.points.end());
    }
}

}  // namespace detail

std::string Series::serialize() const {
    // The bytes are counted first, so that the encoding (hundreds of KB for a busy series
    // with 100 ms slots) is one allocation, not a doubling chain: written every
    // checkpoint_interval, that chain's freed steps grew the heap to several times the
    // memory in use. An upper bound: a slot's fixed fields are at most 68 bytes (5
    // varints of at most 10, a double, the length varint of its counts).
    constexpr std::size_t kSlotFields = 68;
    std::vector<SparseCounts> open_counts;  // one per ring with an open slot, in ring order
    std::size_t bound = 64 + points_.size() * 18;
    for (const auto& ring : rings_) {
        bound += 32;
        if (ring->open_index) {
            open_counts.emplace_back(ring->open.latency);
            bound += kSlotFields + open_counts.back().raw().size();
        }
        for (const auto& slot : ring->sealed) {
            bound += kSlotFields + slot.counts.raw().size();
        }
    }
    std::size_t next_open = 0;
    ByteWriter w;
    w.reserve(bound);
    w.varint(kSeriesFormat);
    writeSettings(w, settings_);
    writeTime(w, first_seen_);
    writeTime(w, newest_);
    w.varint(rings_.size());
    for (const auto& ring : rings_) {
        w.varint(static_cast<std::uint64_t>(ring->width.count()));
        w.varint(ring->open_index ? 1 : 0);
        if (ring->open_index) {
            const IntervalStats& o = ring->open;
            writeSlot(w, *ring->open_index, o.events, o.errors, o.value_sum, o.value_count,
                      o.latency.overflowCount(), open_counts[next_open++].raw());
        }
        w.varint(ring->sealed.size());
        for (const auto& slot : ring->sealed) {
            writeSlot(w, slot);
        }
    }
    w.varint(points_.size());
    std::int64_t previous = 0;
    for (std::size_t i = 0; i < points_.size(); ++i) {
        const ValuePoint& p = points_[i];
        if (i == 0) {
            w.svarint(p.ns);
        } else {
            // Unsigned: the difference of two ascending int64 always fits.
            w.varint(static_cast<std::uint64_t>(p.ns) - static_cast<std::uint64_t>(previous));
        }
        w.f64(p.value);
        previous = p.ns;
    }
    return w.take();
}

bool Series::hasUnsavedChanges() const {
    if (points_changed_from_) {
        return true;
    }
    for (const auto& ring : rings_) {
        if (ring->open_index && !ring->open.empty()) {
            return true;
        }
        for (const auto& slot : ring->sealed) {
            if (!slot.saved) {
                return true;
            }
        }
    }
    return false;
}

std::string Series::serializeChanges() const {
    if (!hasUnsavedChanges()) {
        return {};
    }
    ByteWriter w;
    w.varint(kChangesFormat);
    writeSettings(w, settings_);
    writeTime(w, first_seen_);
    writeTime(w, newest_);
    w.varint(rings_.size());
    for (const auto& ring : rings_) {
        w.varint(static_cast<std::uint64_t>(ring->width.count()));
        w.varint(ring->open_index ? 1 : 0);
        if (ring->open_index) {
            const IntervalStats& o = ring->open;
            writeSlot(w, *ring->open_index, o.events, o.errors, o.value_sum, o.value_count,
                      o.latency.overflowCount(), SparseCounts(o.latency).raw());
            // What advance() has dropped: a reader holding older slots drops them too.
            w.svarint(*ring->open_index - ring->max_slots);
        }
        const auto unsaved = static_cast<std::uint64_t>(
            std::count_if(ring->sealed.begin(), ring->sealed.end(), [](const SealedSlot& s) { return !s.saved; }));
        w.varint(unsaved);
        for (const auto& slot : ring->sealed) {
            if (!slot.saved) {
                writeSlot(w, slot);
            }
        }
    }
    w.varint(points_.empty() ? 0 : 1);
    if (!points_.empty()) {
        w.svarint(points_.front().ns);
    }
    w.varint(points_changed_from_ ? 1 : 0);
    if (points_changed_from_) {
        auto it = std::lower_bound(points_.begin(), points_.end(), *points_changed_from_,
                                   [](const ValuePoint& p, std::int64_t v) { return p.ns < v; });
        w.svarint(*points_changed_from_);
        w.varint(static_cast<std::uint64_t>(points_.end() - it));
        for (; it != points_.end(); ++it) {
            w.svarint(it->ns);
            w.f64(it->value);
        }
    }
    return w.take();
}

void Series::markSaved() {
    for (auto& ring : rings_) {
        for (auto& slot : ring->sealed) {
            slot.saved = true;
        }
    }
    points_changed_from_.reset();
}

bool Series::restore(std::string_view bytes) {
    auto saved = detail::parseSeries(bytes);
    if (!saved || !detail::sameSettings(saved->settings, settings_)) {
        return false;
    }
    first_seen_ = saved->first_seen;
    newest_ = saved->newest;
    for (auto& ring : rings_) {
        ring->sealed.clear();
        ring->open.reset();
        ring->open_index.reset();
        for (auto& s : saved->rings) {
            if (s.width != ring->width.count()) {
                continue;
            }
            ring->sealed = std::move(s.sealed);
            if (s.open) {
                ring->open_index = s.open->index;
                addSlot(ring->open, *s.open);
            }
        }
        if (!ring->open_index && newest_) {
            ring->open_index = slotIndex(*ring, *newest_);
        }
    }
    for (auto& w : windows_) {
        rebuild(*w);
    }
    points_ = std::move(saved->points);
    prunePoints();
    // Restored slots and points are not in any checkpoint this series has written.
    points_changed_from_ = points_.empty() ? std::nullopt : std::optional(points_.front().ns);
    return true;
}

void Series::rebuild(WindowView& w) {
    ++w.generation_;
    w.aggregate_.reset();
    w.covered_ = std::chrono::nanoseconds{0};
    const Ring& ring = *rings_[w.ring_];
    if (!ring.open_index) {
        w.excluded_up_to_ = std::numeric_limits<std::int64_t>::min();
        return;
    }
    w.excluded_up_to_ = *ring.open_index - w.slots_;
    for (auto it = ring.after(w.excluded_up_to_); it != ring.sealed.end(); ++it) {
        addSlot(w.aggregate_, *it);
    }
    mergeInto(w.aggregate_, ring.open);
}

std::size_t Series::memoryBytes() const {
    std::size_t bytes = sizeof(*this);
    for (const auto& ring : rings_) {
        bytes += sizeof(Ring) + ring->open.latency.residentBytes() - sizeof(HdrHistogram);
        for (const auto& slot : ring->sealed) {
            bytes += sizeof(SealedSlot) + slot.counts.byteSize();
        }
    }
    for (const auto& w : windows_) {
        bytes += sizeof(WindowView) + w->aggregate_.latency.residentBytes() - sizeof(HdrHistogram);
    }
    // A deque allocates in blocks; counting the points themselves is close enough.
    bytes += points_.size() * sizeof(ValuePoint);
    return bytes;
}

std::size_t Series::sealedSlots() const {
    std::size_t n = 0;
    for (const auto& ring : rings_) {
        n += ring->sealed.size();
    }
    return n;
}

}  // namespace rollguard::agent
