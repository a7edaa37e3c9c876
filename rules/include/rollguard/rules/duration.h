#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace rollguard::rules {

/// Parses a duration written the way Prometheus and Go write them: one or more
/// `<number><unit>` terms with units ns, us (or µs), ms, s, m, h, d, e.g. "500ms", "1.5s",
/// "1h30m", "2m". A bare "0" is zero. Negative values, unknown units, empty strings and
/// overflow give std::nullopt.
std::optional<std::chrono::nanoseconds> parseDuration(std::string_view text);

/// The shortest exact rendering in the same syntax: 90s -> "1m30s", 1.5ms -> "1.5ms",
/// 0 -> "0s".
std::string formatDuration(std::chrono::nanoseconds d);

/// Formats a latency given in seconds for humans: 0.0123 -> "12.3ms", 2.5 -> "2.5s",
/// 0.000045 -> "45us".
std::string formatSeconds(double seconds);

}  // namespace rollguard::rules
