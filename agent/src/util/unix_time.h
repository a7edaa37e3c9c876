#pragma once
// The state files' time encoding: a TimePoint as integer nanoseconds since the Unix epoch.

#include <chrono>
#include <cstdint>

#include "rollguard/rules/clock.h"

namespace rollguard::agent {

inline std::int64_t unixNanos(rules::TimePoint t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

inline rules::TimePoint fromUnixNanos(std::int64_t ns) {
    return rules::TimePoint{std::chrono::duration_cast<rules::TimePoint::duration>(std::chrono::nanoseconds{ns})};
}

}  // namespace rollguard::agent
