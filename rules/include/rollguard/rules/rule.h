#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "rollguard/rules/diagnostics.h"

namespace rollguard::rules {

enum class Severity { Critical, Warning };

enum class MetricKind {
    Count,       ///< events in the window
    Rate,        ///< events per second over the window
    ErrorRatio,  ///< error events / events, 0..1
    Quantile,    ///< latency quantile in seconds (p50, p99, p99.9, ...)
    Mean,        ///< mean latency in seconds
    Min,         ///< minimum latency in seconds
    Max,         ///< maximum latency in seconds
};

/// What a rule measures. `quantile` is used by MetricKind::Quantile only (0 < q < 1).
struct MetricSpec {
    MetricKind kind = MetricKind::ErrorRatio;
    double quantile = 0.0;
    std::string text;  ///< as written, e.g. "p99"; used in messages

    /// Latency metrics are in seconds and need a source with a latency field.
    bool isLatency() const {
        return kind == MetricKind::Quantile || kind == MetricKind::Mean || kind == MetricKind::Min ||
               kind == MetricKind::Max;
    }
};

enum class Comparison { Above, Below };

/// One rule from the config, fully typed and validated.
struct RuleSpec {
    std::string name;
    Severity severity = Severity::Critical;
    std::string source;  ///< name of the source the rule reads
    MetricSpec metric;
    Comparison comparison = Comparison::Above;
    double threshold = 0.0;  ///< in the metric's unit (seconds for latency metrics)
    std::chrono::nanoseconds window{std::chrono::minutes{5}};
    std::chrono::nanoseconds for_{0};  ///< sustained-breach time before firing
    std::int64_t min_samples = 1;      ///< fewer samples in the window count as "no data"
    std::vector<std::string> hooks;    ///< hook names run when the rule fires
    std::string description;
    SourceLocation location;  ///< where the [[rule]] table starts

    /// True when `value` breaches the threshold (strictly above / strictly below).
    bool breaches(double value) const {
        return comparison == Comparison::Above ? value > threshold : value < threshold;
    }
};

const char* toString(Severity s);
const char* toString(Comparison c);

}  // namespace rollguard::rules
