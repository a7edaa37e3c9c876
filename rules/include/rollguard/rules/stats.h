#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
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
    /// Population standard deviation; NaN when the view cannot tell (the default).
    virtual double stddevSeconds() const { return std::numeric_limits<double>::quiet_NaN(); }
    /// Calls `fn(value_seconds, count)` for every non-empty bucket in ascending value
    /// order (each bucket's representative value). The default has no buckets, which
    /// makes statistical comparisons report no data.
    virtual void forEachBucket(const std::function<void(double value_seconds, std::int64_t count)>& fn) const {
        (void)fn;
    }
};

/// The points of a value series (gauge readings, or a counter's per-interval increases)
/// inside a window, oldest first.
class PointsView {
public:
    virtual ~PointsView() = default;
    /// Calls `fn(seconds_since_window_start, value)` for every point, in time order.
    virtual void forEach(const std::function<void(double seconds_since_window_start, double value)>& fn) const = 0;
};

/// Statistics of one source over one rule's window: what a rule is evaluated on.
struct SeriesStats {
    std::int64_t events = 0;
    std::int64_t errors = 0;
    std::chrono::nanoseconds window{0};  ///< the span the counts cover (for rates)
    const LatencyView* latency = nullptr;  ///< null when the source has no latency
    // Value series (scraped gauges and counters). A counter's values are its per-interval
    // increases, resets already handled by the source.
    std::int64_t value_count = 0;           ///< points in the window
    double value_sum = 0.0;                 ///< sum of the points
    std::optional<double> last_value{};     ///< the newest point
    const PointsView* points = nullptr;     ///< null when the caller keeps no points
};

/// A metric's value over a window and the number of samples it rests on.
struct MetricValue {
    std::optional<double> value;  ///< nullopt: no data (no samples, or no latency)
    std::int64_t samples = 0;     ///< events, or latency samples for latency metrics
};

/// Computes a rule's metric from window statistics. Pure.
///  - value: last_value; increase: value_sum; rate on a value series: value_sum / window;
///    samples = value_count.
///  - growth: least-squares slope over the points (per hour) divided by their mean
///    (0.10 = +10%/h); needs >= 2 points at distinct times and a non-zero mean.
///  - ratio: numerator / denominator over the same stats (no data when the denominator is
///    0); samples = the smaller of the two.
MetricValue computeMetric(const MetricSpec& metric, const SeriesStats& stats);

}  // namespace rollguard::rules
