#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>

namespace rollguard::rules {

/// Wall-clock time as rollguard uses it everywhere: windows, `for`, incident times.
using TimePoint = std::chrono::system_clock::time_point;
using Duration = std::chrono::nanoseconds;

/// The one source of "now". Everything time-dependent takes a Clock so that tests can
/// drive it with ManualClock instead of sleeping.
/// Thread-safety: implementations must be safe to call from any thread.
class Clock {
public:
    virtual ~Clock() = default;
    virtual TimePoint now() const = 0;
};

/// The real clock (std::chrono::system_clock).
class SystemClock final : public Clock {
public:
    TimePoint now() const override { return std::chrono::system_clock::now(); }
};

/// A clock that only moves when told to. Thread-safe.
class ManualClock final : public Clock {
public:
    explicit ManualClock(TimePoint start = TimePoint{std::chrono::seconds{1'700'000'000}}) : now_(start) {}

    TimePoint now() const override {
        std::lock_guard lock(mutex_);
        return now_;
    }
    void set(TimePoint t) {
        std::lock_guard lock(mutex_);
        now_ = t;
    }
    void advance(Duration d) {
        std::lock_guard lock(mutex_);
        now_ += std::chrono::duration_cast<TimePoint::duration>(d);
    }

private:
    mutable std::mutex mutex_;
    TimePoint now_;
};

/// The judge's timeline: the times rules are evaluated at, on a grid of one evaluation
/// interval (`every`) whatever the jitter of the wake-ups that read the clock. A `for` is
/// decided by comparing two evaluation times (as Prometheus compares scheduled evaluation
/// timestamps): were they raw clock readings, an evaluation that woke a few microseconds
/// early would find `for` not yet over and fire one whole interval late.
///
/// Every `tick / every`-th evaluation is a *tick*: the step of the judge's counted
/// history (M-of-N, learned baselines, event-time groups), which must not depend on how
/// often rules are evaluated in between. The first evaluation is a tick, and so is one
/// after a restart of the grid.
/// Not thread-safe (one evaluation loop owns it).
class TickSchedule {
public:
    /// `every` <= 0 or >= tick: every evaluation is a tick. Otherwise `every` should
    /// divide `tick` (the config refuses anything else); a remainder is dropped.
    explicit TickSchedule(Duration tick, Duration every = Duration::zero())
        : every_(every.count() > 0 && every < tick ? every : tick), per_tick_(tick / every_) {}

    /// The evaluation time for a clock reading `reading`: the previous one plus one
    /// interval when the reading is within a quarter of an interval of that, early or
    /// late (a wake-up's jitter); otherwise the reading itself (the first evaluation, a
    /// stall, a step of the wall clock, a clock moved by something other than one
    /// interval), which restarts the grid.
    TimePoint next(TimePoint reading) {
        if (last_) {
            const TimePoint expected = *last_ + std::chrono::duration_cast<TimePoint::duration>(every_);
            const auto off = reading > expected ? reading - expected : expected - reading;
            if (off <= every_ / 4) {
                last_ = expected;
                since_tick_ = since_tick_ + 1 >= per_tick_ ? 0 : since_tick_ + 1;
                return expected;
            }
        }
        last_ = reading;
        since_tick_ = 0;
        return reading;
    }

    /// Whether the time the last next() returned is a tick.
    bool onTick() const { return since_tick_ == 0; }
    /// The evaluation interval.
    Duration every() const { return every_; }

private:
    Duration every_;
    std::int64_t per_tick_;
    std::int64_t since_tick_ = 0;
    std::optional<TimePoint> last_;
};

}  // namespace rollguard::rules
