#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rollguard/agent/hdr_histogram.h"
#include "rollguard/agent/positions.h"
#include "rollguard/rules/clock.h"
#include "rollguard/rules/stats.h"

namespace rollguard::agent {

/// Histogram settings of a series. The store works in integer units; by default
/// microseconds from 1 us to 1 h at 3 significant figures. Sources may choose another
/// resolution (e.g. nanoseconds) and range; rules always speak seconds.
struct HistogramSettings {
    std::int64_t lowest = 1;
    std::int64_t highest = 3'600'000'000;  // 1 h in us
    int sigfigs = 3;
    /// How many store units one second is (1e6 for microseconds).
    double units_per_second = 1e6;
};

/// What a source observed during one tick: events, errors, a latency histogram and the
/// sum/count of plain values (scraped gauges and counters' per-scrape increases), with
/// the newest of those values.
/// Thread-safety: none.
struct IntervalStats {
    explicit IntervalStats(const HistogramSettings& settings = {});
    std::int64_t events = 0;
    std::int64_t errors = 0;
    double value_sum = 0.0;
    std::int64_t value_count = 0;
    /// The newest plain value recorded in the interval (IntervalRecorder::recordValue sets
    /// it; a producer building an interval by hand sets it next to value_sum/value_count).
    /// Merging intervals keeps the later one's when it has one. Series::add turns it into
    /// one point of the series' value points (what `value` and `growth` rules read).
    std::optional<double> last_value;
    HdrHistogram latency;

    bool empty() const {
        return events == 0 && value_count == 0 && !last_value && latency.totalCount() == 0;
    }
    /// Clears every count, the values and last_value; keeps the histogram's settings.
    void reset();
};

/// A part of what a source recorded since the last take: the data of one stream (0 =
/// the whole source; others are label-set selections, see StreamRouter) at one time:
/// `at` empty = arrival time ("now of the tick"), else the start of the event-time bucket.
struct RecordedPart {
    std::uint32_t stream = 0;
    std::optional<rules::TimePoint> at;
    IntervalStats stats;
};

/// A writer's private batch of events keyed by (stream, event-time bucket), folded into
/// an IntervalRecorder with recordBatch. It keeps plain latency values (store units),
/// not dense histograms, so a batch costs no histogram allocation; its buffers are kept
/// across clear() so a steady writer does not allocate either.
/// Thread-safety: none (one writer).
class KeyedBatch {
public:
    /// One event. `bucket_ns`: start of its event-time bucket in ns since the epoch, or
    /// empty for arrival time. `latency_units` < 0: no latency.
    void add(std::uint32_t stream, std::optional<std::int64_t> bucket_ns, std::int64_t latency_units, bool error);
    bool empty() const { return used_ == 0; }
    void clear();

private:
    friend class IntervalRecorder;
    struct Entry {
        std::uint32_t stream = 0;
        bool has_bucket = false;
        std::int64_t bucket_ns = 0;
        std::int64_t events = 0;
        std::int64_t errors = 0;
        std::vector<std::int64_t> latencies;
    };
    std::vector<Entry> entries_;  // [0, used_) in use; the rest keep their buffers
    std::size_t used_ = 0;
    std::size_t last_ = 0;  // the entry hit last: consecutive lines mostly share one
};

/// Where sources record. Writers (a tailer thread) call record/recordBatch; the
/// evaluation tick calls take()/takeParts(), which swap the data out (the fresh stream-0
/// interval is allocated outside the lock), so a writer waits at most for a swap, never
/// for a query. HdrHistogram_c's interval recorder is the pattern. Besides the stream-0
/// arrival interval (record, recordBatch(IntervalStats)) it holds one interval per
/// (stream, event-time bucket) a KeyedBatch brought; a new key takes a spare interval
/// (see recycle) or allocates its dense histogram, once per take interval (under the
/// lock), never per line or batch.
/// Thread-safe.
class IntervalRecorder {
public:
    explicit IntervalRecorder(const HistogramSettings& settings = {});

    /// One event. `latency_seconds` < 0 means the event has no latency.
    void record(double latency_seconds, bool error);
    /// One plain value (a scraped gauge, a counter's increase): adds it to value_sum and
    /// value_count and makes it the interval's last_value. Non-finite values are ignored.
    void recordValue(double value);
    /// Merges a batch a writer accumulated privately (cheaper than one lock per line).
    void recordBatch(const IntervalStats& batch);
    /// The same, and the read positions right after the batch, under the same lock: the
    /// positions a take() returns always match exactly the data taken so far, which is
    /// what makes checkpoints exact (nothing lost, nothing counted twice).
    void recordBatch(const IntervalStats& batch, const SourcePositions& positions);
    /// Both batches and the positions right after them, under one lock (either batch may
    /// be empty).
    void recordBatch(const IntervalStats& batch, const KeyedBatch& keyed, const SourcePositions& positions);
    /// Returns everything recorded since the last take() and starts a new interval.
    /// When `positions` is given and a batch with positions was recorded since the last
    /// take(), it receives those positions; otherwise it is left as it was. Keyed data of
    /// stream 0 is merged in (bucket times dropped) and that of other streams is dropped,
    /// so the positions match what is returned: for sources without labels and event time.
    IntervalStats take(SourcePositions* positions = nullptr);
    /// Everything recorded since the last take, as parts: the stream-0 arrival interval
    /// first (only when it holds data), then the keyed parts in the order their keys first
    /// appeared. Positions as for take(): they match exactly the data of all parts.
    std::vector<RecordedPart> takeParts(SourcePositions* positions = nullptr);
    /// Takes back intervals of taken parts the caller is done with (and clears `spent`):
    /// a new (stream, bucket) key then reuses one instead of allocating and zeroing a
    /// dense histogram, which with event time happens once a tick and would cost the
    /// whole counts array each time. Resets them outside the lock (at the cost of what
    /// they hold); keeps a few, drops the rest and any of other histogram settings.
    void recycle(std::vector<IntervalStats>& spent);

    const HistogramSettings& settings() const { return settings_; }
    /// Converts seconds to store units, rounding to nearest; negative/NaN -> -1.
    std::int64_t toUnits(double seconds) const;

private:
    HistogramSettings settings_;
    std::mutex mutex_;
    IntervalStats current_;
    std::vector<RecordedPart> parts_;  // keyed data since the last take
    std::vector<IntervalStats> spare_;  // reset intervals for new keys (recycle)
    SourcePositions positions_;
    bool positions_fresh_ = false;
};

/// Non-zero histogram counts of one sealed slot, compactly encoded: for each non-zero
/// index in ascending order, LEB128 varints of (index delta, count). A slot of 1,000
/// log-normal latencies takes about 2 bytes per non-zero bucket instead of 8 per bucket
/// of the whole array. Immutable once built.
class SparseCounts {
public:
    SparseCounts() = default;
    /// Encodes the non-zero counts of `h`.
    explicit SparseCounts(const HdrHistogram& h);

    /// Calls fn(index, count) for each non-zero index, ascending.
    template <typename Fn>
    void forEach(Fn&& fn) const {
        std::size_t pos = 0;
        std::int64_t index = -1;
        while (pos < bytes_.size()) {
            index += static_cast<std::int64_t>(readVarint(pos));
            fn(static_cast<std::int32_t>(index), static_cast<std::int64_t>(readVarint(pos)));
        }
    }

    std::size_t entries() const { return entries_; }
    std::size_t byteSize() const { return bytes_.capacity(); }

    /// The encoded bytes, for state files.
    std::string_view raw() const {
        return {reinterpret_cast<const char*>(bytes_.data()), bytes_.size()};
    }
    /// Decodes bytes from raw(); nullopt when they are corrupt (bad varints, an index
    /// outside [0, counts_length), a zero count).
    static std::optional<SparseCounts> fromRaw(std::string_view raw, std::int32_t counts_length);

private:
    std::uint64_t readVarint(std::size_t& pos) const {
        std::uint64_t v = 0;
        int shift = 0;
        for (;;) {
            const std::uint8_t b = bytes_[pos++];
            v |= static_cast<std::uint64_t>(b & 0x7F) << shift;
            if ((b & 0x80) == 0) {
                return v;
            }
            shift += 7;
        }
    }
    std::vector<std::uint8_t> bytes_;
    std::size_t entries_ = 0;
};

/// One point of a series' value points: the time of the interval that carried a
/// last_value (ns since the epoch) and that value.
struct ValuePoint {
    std::int64_t ns = 0;
    double value = 0.0;
};

/// The statistics of one window of one series, maintained incrementally. Implements
/// rules::LatencyView (seconds) and rules::PointsView (the series' value points inside
/// the window). A reference stays valid for the life of its Series and always shows the
/// series' latest state.
/// Thread-safety: none (read it on the thread that owns the Series).
class WindowView final : public rules::LatencyView, public rules::PointsView {
public:
    std::chrono::nanoseconds length() const { return length_; }
    std::chrono::nanoseconds slotWidth() const { return slot_width_; }
    std::int64_t events() const { return aggregate_.events; }
    std::int64_t errors() const { return aggregate_.errors; }
    double valueSum() const { return aggregate_.value_sum; }
    std::int64_t valueCount() const { return aggregate_.value_count; }
    const HdrHistogram& latency() const { return aggregate_.latency; }
    /// The span of time the aggregate's data stands for at the last advance (what `rate`
    /// divides by): the window's length in the steady state when stamps fall on a grid
    /// of the series' stamp span, less while the series is younger than the window.
    std::chrono::nanoseconds covered() const { return covered_; }

    std::int64_t count() const override { return aggregate_.latency.totalCount(); }
    double quantileSeconds(double q) const override;
    double meanSeconds() const override;
    double minSeconds() const override;
    double maxSeconds() const override;
    double stddevSeconds() const override;
    /// Each non-empty bucket at its median equivalent value (what Mann-Whitney ranks).
    void forEachBucket(const std::function<void(double value_seconds, std::int64_t count)>& fn) const override;

    /// Calls fn(seconds since the window's start, value) for each value point inside the
    /// window, oldest first. The window's start is the start of its oldest slot, so a
    /// point is inside exactly when the slot it was added to is still in the aggregate.
    void forEach(const std::function<void(double seconds_since_window_start, double value)>& fn) const override;
    /// Value points inside the window.
    std::size_t pointCount() const;
    /// The newest value point inside the window; nullopt when there is none.
    std::optional<double> lastValue() const;

    /// The rules' view of this window: counts and value sums of the aggregate, latency
    /// and points at *this, last_value = lastValue(). Valid while the Series lives.
    rules::SeriesStats asSeriesStats() const;

private:
    friend class Series;
    WindowView(std::chrono::nanoseconds length, std::chrono::nanoseconds slot_width, std::size_t ring,
               const HistogramSettings& settings, const std::deque<ValuePoint>* points);
    /// The first value point inside the window.
    std::deque<ValuePoint>::const_iterator firstPoint() const;
    /// Start of the window's oldest slot in ns since the epoch; nullopt when unbounded
    /// (the window has seen no time yet).
    std::optional<std::int64_t> startNs() const;

    std::chrono::nanoseconds length_;
    std::chrono::nanoseconds slot_width_;
    std::int64_t slots_;           // ceil(length / slot_width)
    std::size_t ring_;             // index of the SlotRing it reads
    std::int64_t excluded_up_to_;  // slots with index <= this have been subtracted
    std::chrono::nanoseconds covered_{0};
    double units_per_second_;
    IntervalStats aggregate_;
    const std::deque<ValuePoint>* points_;  // the owning Series' points
    /// Bumped by every change of aggregate_ (the Series changes it in add, advance, addAt
    /// and rebuild). Rules are evaluated every 100 ms, mostly over windows that did not
    /// change since the last evaluation: the last few quantiles are kept per generation,
    /// so an idle agent does not walk its histograms ten times a second.
    std::uint64_t generation_ = 1;
    struct CachedQuantile {
        double q = -1.0;
        std::uint64_t generation = 0;
        double seconds = 0.0;
    };
    mutable std::array<CachedQuantile, 4> quantiles_{};
    mutable std::size_t next_quantile_ = 0;
};

/// Opaque handle of a registered window.
using WindowHandle = std::size_t;

/// Time-slotted history of one series (one source, later one label set), with any
/// number of windows over it.
///
/// Slots: a window of length W uses slots of width slotWidthFor(W): the smallest of
/// 100ms, 200ms, 250ms, 500ms, 1s, 2s, 5s, 10s, 15s, 30s, 1m, 2m, 5m, 10m, 15m, 30m, 1h
/// (then whole hours) that keeps the window within 100 slots. So a 1 min window has 1 s
/// slots, 5 min has 5 s slots, 1 h has 1 min slots. Windows whose slots have the same
/// width share one ring of slots; windows of the same length share one aggregate.
///
/// A window of W evaluated at t covers the slot containing t and the slots before it,
/// ceil(W / width) slots in all: between W - width and W of history.
///
/// Memory follows the data: sealed slots keep only their non-zero counts (SparseCounts);
/// each ring keeps one dense histogram for the slot being filled and each window one
/// dense aggregate. Time advancing adds the new data to each aggregate and subtracts the
/// slots that leave it: cost proportional to the non-empty buckets of those slots, never
/// a re-merge of the window.
///
/// Time going backwards (a clock step, a late interval) is clamped by add(): data stamped
/// before the newest slot goes into the newest slot. addAt() instead puts late data into
/// the slot it belongs to (event time), as if it had arrived in time.
///
/// Value points: besides the slots, the series keeps one point (time, value) per interval
/// that carried a last_value, in time order, for the `value` (newest point in the window)
/// and `growth` (slope over the window's points) metrics. A point is in a window exactly
/// when the slot it went into is; points no window covers any more (older than the
/// longest window's oldest slot) are dropped as time advances. So a series holds about
/// scrapes-per-longest-window points, 16 bytes each, and never more than kMaxPoints: past
/// that the oldest points are dropped (pointsDropped() counts them), which only thins
/// what `growth` sees of very long windows.
/// Thread-safety: none; owned by the evaluation thread. Writers use IntervalRecorder.
class Series {
public:
    /// The most value points a series keeps (160 KB): a 1 s scrape over a 2 h 45 min window.
    static constexpr std::size_t kMaxPoints = 10'000;

    /// `stamp_span`: how much time one stamp's data stands for. The daemon, replay and
    /// rule tests stamp what a tick collected with the tick's time (arrivals since the
    /// tick before; an event-time bucket at the tick that ends it), so their data at t
    /// stands for (t - tick, t], and `rate` must divide by what the stamps stand for, not
    /// by the distance between the oldest and newest stamp. 0: a stamp stands for an
    /// instant (what a window covers is then the time from its oldest slot to now).
    explicit Series(const HistogramSettings& settings = {}, std::chrono::nanoseconds stamp_span = {});
    ~Series();
    Series(const Series&) = delete;
    Series& operator=(const Series&) = delete;

    /// Slot width used for a window of `length` (see the class comment).
    static std::chrono::nanoseconds slotWidthFor(std::chrono::nanoseconds length);

    /// Registers a window; a length already registered returns the same handle.
    /// Windows added after data has arrived start empty. length > 0.
    WindowHandle addWindow(std::chrono::nanoseconds length);
    const WindowView& window(WindowHandle handle) const;

    /// Moves time to `now` (slots leave their windows), then adds the interval into the
    /// slot containing `now`. An interval with a last_value adds the point (now, value)
    /// (now clamped as the slot's time is); a second one at the same time replaces it.
    void add(rules::TimePoint now, const IntervalStats& interval);
    /// Moves time to `now` without data.
    void advance(rules::TimePoint now);
    /// Data stamped `at` (event time). At or after the newest time: add(at, interval).
    /// Before it: the data goes into the slot containing `at` in every ring that still
    /// holds that slot (a sealed slot is re-encoded with the data merged in; an empty one
    /// is created), and every window aggregate that currently includes the slot gets it
    /// too, so windows are exactly what they would be had the data arrived in time. A ring
    /// that no longer holds the slot skips it silently. Time does not move. A last_value
    /// becomes the point (at, value), inserted in time order (replacing a point at the same
    /// time) unless no window covers `at` any more.
    void addAt(rules::TimePoint at, const IntervalStats& interval);

    const HistogramSettings& settings() const { return settings_; }

    /// The series' slots and value points (not the aggregates, which are derived) as
    /// bytes, for checkpoints. Format 2: format 1 (slots only) followed by the points.
    std::string serialize() const;
    /// Loads slots and points saved by serialize() into this series, whose windows are
    /// already registered: each ring gets the saved slots of the same width (rings of a
    /// width that was not saved start empty) and every aggregate is rebuilt from its ring.
    /// Bytes of format 1 (written before value points existed) restore too, with no
    /// points: `value` and `growth` have no data until new values arrive. Points no window
    /// covers are dropped. On different histogram settings or corrupt bytes it returns
    /// false and changes nothing.
    bool restore(std::string_view bytes);

    /// What changed since the last markSaved() (or since construction or restore), as
    /// bytes for a checkpoint journal: the times, each ring's open slot and the index up
    /// to which its slots are gone, the slots sealed or re-encoded (late event-time data)
    /// since then, and the value points changed since then. Replayed onto the series'
    /// previous bytes it gives what serialize() gives now. Empty when nothing changed but
    /// time: slots that expire with time leave again after a restore, when time moves on.
    std::string serializeChanges() const;
    /// Whether serializeChanges() would say anything.
    bool hasUnsavedChanges() const;
    /// Everything the series holds is now in a checkpoint: call it once the bytes of
    /// serialize() or serializeChanges() are on disk.
    void markSaved();

    /// Bytes held by the series: sealed slots, the rings' open slots, the aggregates and
    /// the value points; of the dense histograms (open slots, aggregates), the counts
    /// pages in memory (HdrHistogram::residentBytes).
    std::size_t memoryBytes() const;
    /// Sealed slots held over all rings.
    std::size_t sealedSlots() const;
    /// Value points held (over all windows: those of the longest one).
    std::size_t points() const { return points_.size(); }
    /// Value points dropped because the series held kMaxPoints (since construction).
    std::uint64_t pointsDropped() const { return points_dropped_; }

private:
    struct Ring;
    std::int64_t slotIndex(const Ring& ring, rules::TimePoint t) const;
    void rebuild(WindowView& window);
    void checkSettings(const IntervalStats& interval) const;
    /// Drops points no window covers, then the oldest beyond kMaxPoints.
    void prunePoints();
    /// Inserts a point in time order; one at the same time is replaced.
    void insertPoint(std::int64_t ns, double value);

    HistogramSettings settings_;
    std::chrono::nanoseconds stamp_span_;
    /// The earliest time the series' data stands for: the first advance (arrivals), or an
    /// event-time stamp less its span; what a young series' windows cover starts there.
    std::optional<rules::TimePoint> first_seen_;
    std::optional<rules::TimePoint> newest_;
    std::vector<std::unique_ptr<Ring>> rings_;
    std::vector<std::unique_ptr<WindowView>> windows_;
    std::unique_ptr<IntervalStats> scratch_;  // dense slot for re-encoding; made on first late data
    std::deque<ValuePoint> points_;           // ascending ns, distinct times
    /// The earliest point added or replaced since markSaved(); nullopt: none.
    std::optional<std::int64_t> points_changed_from_;
    std::uint64_t points_dropped_ = 0;
};

}  // namespace rollguard::agent
