#include "rollguard/agent/judge.h"

#include "rollguard/agent/log_source.h"

namespace rollguard::agent {

Judge::Judge(const Config& config) : engine_(config.rules) {
    for (const auto& source : config.sources) {
        source_names_.push_back(source.name);
        series_.push_back(std::make_unique<Series>(histogramSettingsFor(source)));
    }
    // Every rule reads one window of its source's series; equal windows are shared.
    for (const auto& rule : engine_.rules()) {
        const std::size_t source = sourceIndex(rule.source);
        rule_windows_.push_back(source == npos ? std::nullopt
                                               : std::optional(std::pair(source, series_[source]->addWindow(rule.window))));
    }
}

std::size_t Judge::sourceIndex(std::string_view name) const {
    for (std::size_t i = 0; i < source_names_.size(); ++i) {
        if (source_names_[i] == name) {
            return i;
        }
    }
    return npos;
}

void Judge::add(std::size_t source, rules::TimePoint now, const IntervalStats& interval) {
    series_.at(source)->add(now, interval);
}

rules::SeriesStats Judge::statsFor(std::size_t rule_index) const {
    if (rule_index < rule_windows_.size() && rule_windows_[rule_index]) {
        const auto [source, window] = *rule_windows_[rule_index];
        return series_[source]->window(window).asSeriesStats();
    }
    return {};
}

std::vector<rules::Transition> Judge::evaluate(rules::TimePoint now) {
    for (auto& series : series_) {
        series->advance(now);
    }
    const auto& specs = engine_.rules();
    return engine_.evaluate(now, [&](const rules::RuleSpec& rule) {
        return statsFor(static_cast<std::size_t>(&rule - specs.data()));
    });
}

}  // namespace rollguard::agent
