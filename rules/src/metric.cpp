#include <chrono>

#include "rollguard/rules/stats.h"

namespace rollguard::rules {

MetricValue computeMetric(const MetricSpec& metric, const SeriesStats& stats) {
    MetricValue out;
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
            default:
                break;
        }
        return out;
    }

    out.samples = stats.events;
    switch (metric.kind) {
        case MetricKind::Count:
            out.value = static_cast<double>(stats.events);
            break;
        case MetricKind::Rate: {
            const double seconds = std::chrono::duration<double>(stats.window).count();
            // A zero-length window has no meaningful rate.
            if (seconds > 0.0) {
                out.value = static_cast<double>(stats.events) / seconds;
            }
            break;
        }
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
