#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "rollguard/agent/rule_value.h"
#include "rollguard/rules/clock.h"
#include "rollguard/rules/engine.h"

namespace rollguard::agent {

class JsonWriter;

/// One evaluation of one rule (and group) at one tick of a replay.
struct TimelinePoint {
    rules::TimePoint at{};
    std::optional<double> value;      ///< nullopt: no data
    std::optional<double> threshold;  ///< the effective threshold (after a baseline)
    std::int64_t samples = 0;
    rules::AlertState state = rules::AlertState::Inactive;
    std::optional<double> baseline;  ///< a relative threshold's baseline
    std::optional<rules::MannWhitneyResult> mann_whitney;  ///< a compare rule's test
};

/// A state change, with the hooks that would have run (a replay never runs them).
struct TimelineEvent {
    rules::TimePoint at{};
    rules::AlertState from = rules::AlertState::Inactive;
    rules::AlertState to = rules::AlertState::Inactive;
    std::optional<double> value;
    std::optional<double> threshold;
    std::int64_t samples = 0;
    std::vector<std::string> hooks;
    std::string note;  ///< e.g. "latched: rollback already ran", "dry run", "inhibited"
    std::optional<double> baseline;
    std::optional<rules::MannWhitneyResult> mann_whitney;
};

/// Everything a replay learned about one rule (or one group of a grouped rule).
struct RuleTimeline {
    std::string rule;
    std::string group;  ///< empty for ungrouped rules
    std::string severity;   ///< "critical" / "warning"
    std::string metric;     ///< as written, e.g. "p99", "error_ratio"
    std::string condition;  ///< e.g. "above 250ms for 2m (window 5m)"
    MetricUnit unit = MetricUnit::Plain;  ///< of the values (a compare rule: Change)
    /// What the values are (kind, threshold as written); its metric and unit are
    /// those of the two fields above, which the renderers use.
    ValueShape shape;
    std::vector<TimelinePoint> points;  ///< one per tick, in time order
    std::vector<TimelineEvent> events;  ///< state changes, in time order
};

/// The rule timeline of a replay: what the daemon would have decided, tick by tick.
struct Timeline {
    std::string config_path;
    std::optional<rules::TimePoint> from;  ///< first tick
    std::optional<rules::TimePoint> to;    ///< last tick
    std::vector<RuleTimeline> rules;
};

/// Collects a Timeline from an Engine as a replay drives it: call addRule() once per
/// rule (or group) in the engine's order, then observe() after every evaluation.
/// Thread-safety: none.
class TimelineBuilder {
public:
    explicit TimelineBuilder(std::string config_path);

    /// Starts the timeline of one rule; returns its index.
    std::size_t addRule(RuleTimeline header);
    /// Records one tick's evaluation of rule `index`.
    void addPoint(std::size_t index, const TimelinePoint& point);
    /// Records a state change of rule `index`.
    void addEvent(std::size_t index, TimelineEvent event);

    const Timeline& timeline() const { return timeline_; }
    Timeline take() { return std::move(timeline_); }

private:
    Timeline timeline_;
};

/// The timeline as text: per rule one line per state change
/// ("2026-11-23T10:04:12.000Z  router-p99 (critical)  pending -> firing  p99=412ms
/// threshold 250ms  1832 samples  hooks: rollback-env, page"; the value as
/// describeRuleValue says it), and "never breached" for rules that stayed inactive.
std::string renderTimelineText(const Timeline& timeline);

/// Writes the timeline as a JSON array of rules (each with its events; points are
/// left out when `with_points` is false).
void writeTimelineJson(JsonWriter& out, const Timeline& timeline, bool with_points);

/// One self-contained HTML page (inline CSS and SVG, no script, no external asset):
/// a summary table (rule, severity, condition, first pending, first firing, resolved,
/// hooks), then per rule a chart of its metric over the replay with the threshold as a
/// dashed line, pending (amber) and firing (red) periods shaded, no-data gaps left
/// blank, hook runs marked with a labelled vertical line, and time and value axes with
/// readable ticks. Long replays are reduced to at most `max_columns` columns per
/// chart, each drawn as the min..max band of the points it covers plus their last
/// value, so a spike is never averaged away.
std::string renderTimelineHtml(const Timeline& timeline, std::size_t max_columns = 1200);

}  // namespace rollguard::agent
