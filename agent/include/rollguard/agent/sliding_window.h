#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <utility>
#include <vector>

#include "rollguard/agent/hdr_histogram.h"
#include "rollguard/rules/clock.h"
#include "rollguard/rules/stats.h"

namespace rollguard::agent {

/// Histogram settings of a series: values in microseconds, 1 us .. 1 h, 3 significant
/// figures unless configured otherwise.
struct HistogramSettings {
    std::int64_t lowest = 1;
    std::int64_t highest = 3'600'000'000;  // 1 h in us
    int sigfigs = 3;
    /// How many store units one second is (1e6 for microseconds).
    double units_per_second = 1e6;
};

/// What a source observed during one tick: events, errors and a latency histogram.
struct IntervalStats {
    explicit IntervalStats(const HistogramSettings& settings = {});
    std::int64_t events = 0;
    std::int64_t errors = 0;
    HdrHistogram latency;
    void reset();
};

/// Where sources record. Writers (a tailer thread) call record/recordBatch; the
/// evaluation tick calls take() which swaps the interval out, so a writer waits at most
/// for a swap, never for a query. Thread-safe.
class IntervalRecorder {
public:
    explicit IntervalRecorder(const HistogramSettings& settings = {});

    /// One event. `latency_seconds` < 0 means the event has no latency.
    void record(double latency_seconds, bool error);
    /// Merges a batch a writer accumulated privately (cheaper than one lock per line).
    void recordBatch(const IntervalStats& batch);
    /// Returns everything recorded since the last take() and starts a new interval.
    IntervalStats take();

    const HistogramSettings& settings() const { return settings_; }
    /// Converts seconds to store units, rounding to nearest; negative/NaN -> -1.
    std::int64_t toUnits(double seconds) const;

private:
    HistogramSettings settings_;
    std::mutex mutex_;
    IntervalStats current_;
};

/// Statistics merged over a window; implements rules::LatencyView (seconds).
class WindowStats final : public rules::LatencyView {
public:
    explicit WindowStats(const HistogramSettings& settings);
    std::int64_t events = 0;
    std::int64_t errors = 0;
    std::chrono::nanoseconds covered{0};  ///< span the slots cover
    HdrHistogram latency;

    std::int64_t count() const override { return latency.totalCount(); }
    double quantileSeconds(double q) const override;
    double meanSeconds() const override;
    double minSeconds() const override;
    double maxSeconds() const override;

    /// The rules' view of this window (latency points at *this).
    rules::SeriesStats asSeriesStats() const;

private:
    double units_per_second_;
};

/// Time-slotted history of one series. Each slot keeps its events, errors and only the
/// non-zero histogram counts (index, count), so memory follows the data rather than
/// slots x full histogram. Slots older than `retention` are dropped.
/// Thread-safety: none; owned by the evaluation thread.
class SlidingWindow {
public:
    SlidingWindow(std::chrono::nanoseconds slot_width, std::chrono::nanoseconds retention,
                  const HistogramSettings& settings = {});

    /// Adds an interval into the slot containing `at`, then drops expired slots.
    void add(rules::TimePoint at, const IntervalStats& interval);
    /// Merges the slots in (now - window, now]. The window is rounded up to whole slots.
    WindowStats query(rules::TimePoint now, std::chrono::nanoseconds window) const;

    std::size_t slotCount() const { return slots_.size(); }
    std::size_t memoryBytes() const;
    const HistogramSettings& settings() const { return settings_; }

private:
    struct Slot {
        std::int64_t index = 0;  // time / slot_width
        std::int64_t events = 0;
        std::int64_t errors = 0;
        std::vector<std::pair<std::int32_t, std::int64_t>> counts;  // sorted by index
    };
    std::int64_t slotIndex(rules::TimePoint t) const;
    void expire(std::int64_t newest_index);

    std::chrono::nanoseconds slot_width_;
    std::chrono::nanoseconds retention_;
    HistogramSettings settings_;
    std::deque<Slot> slots_;  // ascending slot index
};

}  // namespace rollguard::agent
