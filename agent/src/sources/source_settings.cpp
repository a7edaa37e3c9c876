#include <algorithm>

#include "rollguard/agent/log_source.h"

namespace rollguard::agent {

HistogramSettings histogramSettingsFor(const LogSourceConfig& source) {
    HistogramSettings settings;
    if (source.latency) {
        const auto& l = *source.latency;
        settings.units_per_second = 1e9 / static_cast<double>(l.resolution.count());
        settings.highest = std::max<std::int64_t>(2, l.highest / l.resolution);
        settings.sigfigs = l.significant_figures;
    }
    return settings;
}

}  // namespace rollguard::agent
