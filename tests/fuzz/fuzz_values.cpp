// Fuzz target: the duration and threshold parsers. Input: the first byte picks a mode,
// the rest is the text (or 8 bytes of a number):
//  0  rules::parseDuration(text): when it parses, the value is >= 0 and round-trips:
//     parseDuration(formatDuration(d)) == d, and formatting that again gives the same text.
//  1  formatDuration(n) for n = 8 input bytes as a non-negative int64 of nanoseconds:
//     parses back to exactly n.
//  2  rules::formatSeconds(x) for x = 8 input bytes as a double: never empty, no crash.
//  3  parseRfc3339Nanos(text) (timestamps, --from/--to): no crash.
//  4  a rule threshold `above = "<text>"` (duration strings like "80ms" for latency
//     metrics, factors "2x", changes "+10%") in a small config, for the metric picked by
//     the second byte (p99, error_ratio, rate, mean): parseConfig never crashes; every
//     error has line:col; an accepted absolute threshold on a latency metric is exactly
//     parseDuration(text) in seconds; a factor is > 0; a change is > -100%.
//  5  the same with the text raw (`above = <text>`: numbers, 0.05, 5e-2, inf, ...): an
//     accepted threshold is finite and >= 0, and <= 1 for error_ratio.
//  6  byte sizes: `max_line_bytes = <text>` on the source: accepted only between 1 and
//     64 MiB; every error with line:col.
//  7  a percentile metric name `metric = "<text>"` (p50, p99.9, p999): an accepted
//     quantile is strictly between 0 and 1.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "rollguard/agent/config.h"
#include "rollguard/agent/log_source.h"
#include "rollguard/rules/duration.h"

using rollguard::fuzz::check;
namespace agent = rollguard::agent;
namespace rules = rollguard::rules;

namespace {

/// A TOML basic string holding `s` (escapes '"', '\\' and control characters).
std::string tomlString(std::string_view s) {
    std::string out = "\"";
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20 || u == 0x7f) {
            static constexpr char kHex[] = "0123456789abcdef";
            out += "\\u00";
            out += kHex[u >> 4];
            out += kHex[u & 15];
        } else {
            out += c;
        }
    }
    return out + "\"";
}

/// The config of modes 4-7 (metric on line 11, above on line 12).
std::string configWith(std::string_view metric, std::string_view above, std::string_view max_line_bytes) {
    return "[[source]]\n"                                                  // 1
           "name = \"app\"\n"                                              // 2
           "type = \"json_log\"\n"                                         // 3
           "paths = [\"/var/log/app/*.jsonl\"]\n"                          // 4
           "latency = { field = \"duration_ms\", unit = \"ms\" }\n"        // 5
           "error = { field = \"status\", gte = 500 }\n"                   // 6
           "max_line_bytes = " + std::string(max_line_bytes) + "\n"        // 7
           "[[rule]]\n"                                                    // 8
           "name = \"r\"\n"                                                // 9
           "source = \"app\"\n"                                            // 10
           "metric = " + std::string(metric) + "\n"                        // 11
           "above = " + std::string(above) + "\n"                          // 12
           "hooks = [\"h\"]\n"                                             // 13
           "[[hook]]\n"
           "name = \"h\"\n"
           "type = \"env_file\"\n"
           "path = \"/etc/app/env\"\n"
           "set = { FEATURE = \"0\" }\n";
}

agent::LoadResult load(const std::string& text) {
    agent::LoadResult r = agent::parseConfig(text, "/fuzz/values.toml");
    bool has_error = false;
    for (const auto& d : r.diagnostics) {
        if (d.level == rules::Diagnostic::Level::Error) {
            has_error = true;
            check(d.where.line >= 1 && d.where.column >= 1, "an error without line:col");
        }
    }
    check(r.ok() != has_error, "accepted with an error, or refused without one");
    return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    const std::uint8_t mode = data[0] % 8;
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (mode) {
        case 0: {
            if (const auto d = rules::parseDuration(text)) {
                check(d->count() >= 0, "a negative duration parsed");
                const std::string f = rules::formatDuration(*d);
                const auto back = rules::parseDuration(f);
                check(back.has_value() && *back == *d, "formatDuration(parseDuration(x)) does not parse back");
                check(rules::formatDuration(*back) == f, "formatDuration is not stable");
            }
            break;
        }
        case 1: {
            std::uint64_t raw = 0;
            std::memcpy(&raw, text.data(), std::min(text.size(), sizeof raw));
            const std::chrono::nanoseconds n{static_cast<std::int64_t>(raw & 0x7fffffffffffffffULL)};
            const auto back = rules::parseDuration(rules::formatDuration(n));
            check(back.has_value() && *back == n, "formatDuration(n) does not parse back to n");
            break;
        }
        case 2: {
            double x = 0.0;
            std::memcpy(&x, text.data(), std::min(text.size(), sizeof x));
            check(!rules::formatSeconds(x).empty(), "formatSeconds gave nothing");
            break;
        }
        case 3:
            (void)agent::parseRfc3339Nanos(text);
            break;
        case 4:
        case 5: {
            if (text.empty()) {
                break;
            }
            static constexpr const char* kMetrics[] = {"\"p99\"", "\"error_ratio\"", "\"rate\"", "\"mean\""};
            const std::string_view metric = kMetrics[static_cast<unsigned char>(text[0]) % 4];
            const std::string_view value = text.substr(1);
            if (mode == 5 && value.find('\n') != std::string_view::npos) {
                break;  // one line only: the rest of the config must stay what it is
            }
            const auto r = load(configWith(metric, mode == 4 ? tomlString(value) : std::string(value), "65536"));
            if (!r.ok() || r.config->rules.empty()) {
                break;
            }
            const auto& rule = r.config->rules.front();
            const bool latency = rule.metric.isLatency();
            if (rule.threshold_kind == rules::ThresholdKind::Factor) {
                check(rule.threshold > 0.0 && std::isfinite(rule.threshold), "a factor threshold <= 0");
            } else if (rule.threshold_kind == rules::ThresholdKind::Percent) {
                check(rule.threshold > -1.0 && std::isfinite(rule.threshold), "a change threshold <= -100%");
            } else {
                check(std::isfinite(rule.threshold) && rule.threshold >= 0.0, "a threshold not finite and >= 0");
                if (rule.metric.kind == rules::MetricKind::ErrorRatio) {
                    check(rule.threshold <= 1.0, "an error_ratio threshold above 1");
                }
                if (mode == 4 && latency) {
                    const auto d = rules::parseDuration(value);
                    check(d.has_value() && rule.threshold == std::chrono::duration<double>(*d).count(),
                          "a latency threshold is not its duration in seconds");
                }
            }
            break;
        }
        case 6: {
            if (text.find('\n') != std::string_view::npos) {
                break;
            }
            const auto r = load(configWith("\"p99\"", "\"80ms\"", text));
            if (r.ok()) {
                const auto& sources = r.config->sources;
                check(!sources.empty(), "the source is gone");
                const std::size_t n = sources.front().max_line_bytes;
                check(n >= 1 && n <= 64 * 1024 * 1024, "max_line_bytes accepted out of 1..64 MiB");
            }
            break;
        }
        case 7: {
            const auto r = load(configWith(tomlString(text), "1", "65536"));
            if (r.ok() && !r.config->rules.empty()) {
                const auto& m = r.config->rules.front().metric;
                if (m.kind == rules::MetricKind::Quantile) {
                    check(m.quantile > 0.0 && m.quantile < 1.0, "a percentile outside (0, 1)");
                }
            }
            break;
        }
        default:
            break;
    }
    return 0;
}
