#pragma once

#include <chrono>
#include <mutex>

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

}  // namespace rollguard::rules
