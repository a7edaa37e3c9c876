#pragma once

#include <cstddef>
#include <limits>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/agent/sliding_window.h"
#include "rollguard/rules/clock.h"
#include "rollguard/rules/engine.h"

namespace rollguard::agent {

/// The judgement loop shared by the daemon, `rollguard replay` and `rollguard test`:
/// one Series per source, one window per rule over its source's series, and the rule
/// engine. Callers feed what each source observed, then evaluate at a time point; the
/// judge never reads a clock, a file or a socket, so the three callers decide exactly
/// alike on the same data.
/// Thread-safety: none; one owner (the daemon's evaluation thread, a replay, a test).
class Judge {
public:
    static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();

    explicit Judge(const Config& config);
    Judge(const Judge&) = delete;
    Judge& operator=(const Judge&) = delete;

    /// Index of the source called `name`, or npos.
    std::size_t sourceIndex(std::string_view name) const;
    std::size_t sourceCount() const { return series_.size(); }
    Series& series(std::size_t source) { return *series_.at(source); }
    const Series& series(std::size_t source) const { return *series_.at(source); }

    /// What source `source` observed up to `now` (arrival time: into the slot of `now`).
    void add(std::size_t source, rules::TimePoint now, const IntervalStats& interval);

    /// Moves every series to `now` and evaluates every rule; returns the state changes.
    std::vector<rules::Transition> evaluate(rules::TimePoint now);

    /// The statistics rule `rule_index` reads right now (empty when its source is
    /// unknown).
    rules::SeriesStats statsFor(std::size_t rule_index) const;

    const rules::Engine& engine() const { return engine_; }
    rules::Engine& engine() { return engine_; }

private:
    std::vector<std::string> source_names_;
    std::vector<std::unique_ptr<Series>> series_;
    /// Per rule: (source index, window handle) of the window it reads.
    std::vector<std::optional<std::pair<std::size_t, WindowHandle>>> rule_windows_;
    rules::Engine engine_;
};

}  // namespace rollguard::agent
