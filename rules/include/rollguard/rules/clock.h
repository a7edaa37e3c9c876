#pragma once

#include <chrono>
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

/// The judge's timeline: the times rules are evaluated at, on a grid of one tick whatever
/// the jitter of the wake-ups that read the clock. A `for` is decided by comparing two
/// evaluation times (as Prometheus compares scheduled evaluation timestamps): were they
/// raw clock readings, a tick that woke a few microseconds early would find `for` not yet
/// over and fire one whole tick late.
/// Not thread-safe (one evaluation loop owns it).
class TickSchedule {
public:
    explicit TickSchedule(Duration tick) : tick_(tick) {}

    /// The evaluation time of a tick whose clock reading is `reading`: the previous one
    /// plus one tick when the reading is within a quarter of a tick of that, early or
    /// late (a wake-up's jitter); otherwise the reading itself (the first tick, a stall,
    /// a step of the wall clock, a clock moved by something other than one tick).
    TimePoint next(TimePoint reading) {
        if (last_) {
            const TimePoint expected = *last_ + std::chrono::duration_cast<TimePoint::duration>(tick_);
            const auto off = reading > expected ? reading - expected : expected - reading;
            if (off <= tick_ / 4) {
                last_ = expected;
                return expected;
            }
        }
        last_ = reading;
        return reading;
    }

private:
    Duration tick_;
    std::optional<TimePoint> last_;
};

}  // namespace rollguard::rules
