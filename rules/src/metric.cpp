#include <algorithm>
#include <chrono>
#include <cmath>

#include "rollguard/rules/stats.h"

namespace rollguard::rules {

namespace {

constexpr double kSecondsPerHour = 3600.0;

/// Least-squares slope (per hour) over the points divided by their mean.
std::optional<double> growthPerHour(const SeriesStats& stats) {
    if (stats.points == nullptr) {
        return std::nullopt;
    }
    // Two passes would need the points twice; sums are enough for a slope.
    double n = 0.0;
    double sx = 0.0;
    double sy = 0.0;
    double sxx = 0.0;
    double sxy = 0.0;
    stats.points->forEach([&](double t, double v) {
        if (!std::isfinite(t) || !std::isfinite(v)) {
            return;
        }
        n += 1.0;
        sx += t;
        sy += v;
        sxx += t * t;
        sxy += t * v;
    });
    if (n < 2.0) {
        return std::nullopt;
    }
    const double denom = n * sxx - sx * sx;
    const double mean = sy / n;
    // All points at one instant, or a zero mean: no meaningful relative trend.
    if (!(std::fabs(denom) > 0.0) || mean == 0.0) {
        return std::nullopt;
    }
    const double slope_per_second = (n * sxy - sx * sy) / denom;
    return slope_per_second * kSecondsPerHour / std::fabs(mean);
}

MetricValue computeValueMetric(const MetricSpec& metric, const SeriesStats& stats) {
    MetricValue out;
    out.samples = stats.value_count;
    if (stats.value_count <= 0) {
        out.samples = 0;
        return out;
    }
    switch (metric.kind) {
        case MetricKind::Value:
            out.value = stats.last_value;
            break;
        case MetricKind::Increase:
            out.value = stats.value_sum;
            break;
        case MetricKind::Growth:
            out.value = growthPerHour(stats);
            break;
        default:
            break;
    }
    return out;
}

}  // namespace

MetricValue computeMetric(const MetricSpec& metric, const SeriesStats& stats) {
    MetricValue out;
    if (metric.kind == MetricKind::Ratio) {
        if (metric.operands.size() != 2) {
            return out;
        }
        const MetricValue num = computeMetric(metric.operands[0], stats);
        const MetricValue den = computeMetric(metric.operands[1], stats);
        out.samples = std::min(num.samples, den.samples);
        if (num.value && den.value && *den.value != 0.0) {
            out.value = *num.value / *den.value;
        }
        return out;
    }
    if (metric.isValue()) {
        return computeValueMetric(metric, stats);
    }
    if (metric.isLatency()) {
        if (stats.latency == nullptr) {
            return out;
        }
        out.samples = stats.latency->count();
        if (out.samples <= 0) {
            out.samples = 0;
            return out;
        }
        switch (metric.kind) {
            case MetricKind::Quantile:
                out.value = stats.latency->quantileSeconds(metric.quantile);
                break;
            case MetricKind::Mean:
                out.value = stats.latency->meanSeconds();
                break;
            case MetricKind::Min:
                out.value = stats.latency->minSeconds();
                break;
            case MetricKind::Max:
                out.value = stats.latency->maxSeconds();
                break;
            case MetricKind::Stddev: {
                const double sd = stats.latency->stddevSeconds();
                if (std::isfinite(sd)) {
                    out.value = sd;
                }
                break;
            }
            default:
                break;
        }
        return out;
    }

    const double seconds = std::chrono::duration<double>(stats.window).count();
    if (metric.kind == MetricKind::Rate && stats.value_count > 0 && stats.events == 0) {
        // A scraped counter: its points are per-interval increases.
        out.samples = stats.value_count;
        if (seconds > 0.0) {
            out.value = stats.value_sum / seconds;
        }
        return out;
    }
    out.samples = stats.events;
    switch (metric.kind) {
        case MetricKind::Count:
            out.value = static_cast<double>(stats.events);
            break;
        case MetricKind::Rate:
            // A zero-length window has no meaningful rate.
            if (seconds > 0.0) {
                out.value = static_cast<double>(stats.events) / seconds;
            }
            break;
        case MetricKind::ErrorRatio:
            if (stats.events > 0) {
                out.value = static_cast<double>(stats.errors) / static_cast<double>(stats.events);
            }
            break;
        default:
            break;
    }
    return out;
}

}  // namespace rollguard::rules
