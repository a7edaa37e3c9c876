#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "rollguard/rules/clock.h"
#include "rollguard/rules/rule.h"
#include "rollguard/rules/stats.h"

namespace rollguard::rules {

/// Alert state of one rule. Resolved is reported in a transition (firing -> resolved)
/// and the rule is Inactive again right after.
enum class AlertState { Inactive, Pending, Firing, Resolved };
const char* toString(AlertState s);

/// The sustained-breach state machine of one rule, Prometheus `for` semantics:
///  - a breach moves Inactive -> Pending (since = now); with `for` = 0 straight to Firing;
///  - Pending becomes Firing once it has been breached continuously for `for`
///    (now - since >= for);
///  - a non-breach (or no data: fewer than min_samples) in Pending resets to Inactive;
///  - a non-breach in Firing resolves (Firing -> Resolved, then Inactive).
/// Pure: the caller passes `now`. Not thread-safe; one owner.
class RuleStateMachine {
public:
    explicit RuleStateMachine(std::chrono::nanoseconds for_duration) : for_(for_duration) {}

    struct Step {
        AlertState from;
        AlertState to;
        bool changed() const { return from != to; }
    };

    /// Feeds one evaluation. `breached` is false for no data.
    Step observe(TimePoint now, bool breached);

    AlertState state() const { return state_; }
    /// When the current Pending/Firing episode began (breach first seen).
    std::optional<TimePoint> since() const { return since_; }
    /// When the rule went Firing, if it is firing.
    std::optional<TimePoint> firingSince() const { return firing_since_; }

private:
    std::chrono::nanoseconds for_;
    AlertState state_ = AlertState::Inactive;
    std::optional<TimePoint> since_;
    std::optional<TimePoint> firing_since_;
};

/// What one evaluation of one rule decided, reported only when the state changed.
struct Transition {
    std::size_t rule_index = 0;
    const RuleSpec* rule = nullptr;
    AlertState from = AlertState::Inactive;
    AlertState to = AlertState::Inactive;
    MetricValue metric;       ///< value and samples at this evaluation
    TimePoint at{};           ///< evaluation time
    TimePoint since{};        ///< when the breach began (for Pending/Firing/Resolved)
    /// Hooks to run now. Non-empty only on a move to Firing, and for a critical rule
    /// only the first time it fires (the rollback latch): a rollback runs once per
    /// incident. Warnings notify every time they fire.
    std::vector<std::string> hooks_to_run;
};

/// Current status of one rule, for logs, /metrics and the status API.
struct RuleStatus {
    AlertState state = AlertState::Inactive;
    MetricValue last;
    std::optional<TimePoint> since;
    std::optional<TimePoint> last_evaluation;
    bool latched = false;  ///< critical rule whose rollback has run
};

/// Evaluates every rule on each tick. Owns one state machine and latch per rule.
/// Pure: statistics come from the caller's lookup, time from the caller's `now`.
/// Not thread-safe; the agent's evaluation thread owns it.
class Engine {
public:
    explicit Engine(std::vector<RuleSpec> rules);

    using StatsLookup = std::function<SeriesStats(const RuleSpec&)>;

    /// Evaluates all rules at `now`; returns the transitions (state changes) in rule order.
    std::vector<Transition> evaluate(TimePoint now, const StatsLookup& lookup);

    const std::vector<RuleSpec>& rules() const { return rules_; }
    const RuleStatus& status(std::size_t rule_index) const { return status_.at(rule_index); }

    /// Clears the rollback latch of every rule (manual re-arm).
    void rearm();

private:
    std::vector<RuleSpec> rules_;
    std::vector<RuleStateMachine> machines_;
    std::vector<RuleStatus> status_;
};

}  // namespace rollguard::rules
