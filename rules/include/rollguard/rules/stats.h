#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "rollguard/rules/rule.h"

namespace rollguard::rules {

/// A read-only view of a latency distribution over a window, in seconds.
/// The agent's HDR store implements it; rules never see the histogram itself.
class LatencyView {
public:
    virtual ~LatencyView() = default;
    virtual std::int64_t count() const = 0;
    /// q in (0, 1]; only called when count() > 0.
    virtual double quantileSeconds(double q) const = 0;
    virtual double meanSeconds() const = 0;
    virtual double minSeconds() const = 0;
    virtual double maxSeconds() const = 0;
};

/// Statistics of one source over one rule's window: what a rule is evaluated on.
struct SeriesStats {
    std::int64_t events = 0;
    std::int64_t errors = 0;
    std::chrono::nanoseconds window{0};  ///< the span the counts cover (for rates)
    const LatencyView* latency = nullptr;  ///< null when the source has no latency
};

/// A metric's value over a window and the number of samples it rests on.
struct MetricValue {
    std::optional<double> value;  ///< nullopt: no data (no samples, or no latency)
    std::int64_t samples = 0;     ///< events, or latency samples for latency metrics
};

/// Computes a rule's metric from window statistics. Pure.
MetricValue computeMetric(const MetricSpec& metric, const SeriesStats& stats);

}  // namespace rollguard::rules
