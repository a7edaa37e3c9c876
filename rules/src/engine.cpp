#include "rollguard/rules/engine.h"

#include <utility>

namespace rollguard::rules {

const char* toString(AlertState s) {
    switch (s) {
        case AlertState::Inactive:
            return "inactive";
        case AlertState::Pending:
            return "pending";
        case AlertState::Firing:
            return "firing";
        case AlertState::Resolved:
            return "resolved";
    }
    return "unknown";
}

RuleStateMachine::Step RuleStateMachine::observe(TimePoint now, bool breached) {
    const AlertState from = state_;
    switch (state_) {
        case AlertState::Inactive:
        case AlertState::Resolved:
            if (breached) {
                since_ = now;
                if (for_.count() <= 0) {
                    state_ = AlertState::Firing;
                    firing_since_ = now;
                } else {
                    state_ = AlertState::Pending;
                }
            }
            break;
        case AlertState::Pending:
            if (!breached) {
                // Any gap in the breach starts the `for` clock over.
                state_ = AlertState::Inactive;
                since_.reset();
            } else if (since_ && now - *since_ >= for_) {
                state_ = AlertState::Firing;
                firing_since_ = now;
            }
            break;
        case AlertState::Firing:
            if (!breached) {
                state_ = AlertState::Inactive;
                since_.reset();
                firing_since_.reset();
                return Step{from, AlertState::Resolved};
            }
            break;
    }
    return Step{from, state_};
}

Engine::Engine(std::vector<RuleSpec> rules) : rules_(std::move(rules)) {
    machines_.reserve(rules_.size());
    for (const auto& rule : rules_) {
        machines_.emplace_back(rule.for_);
    }
    status_.resize(rules_.size());
}

std::vector<Transition> Engine::evaluate(TimePoint now, const StatsLookup& lookup) {
    std::vector<Transition> transitions;
    for (std::size_t i = 0; i < rules_.size(); ++i) {
        const RuleSpec& rule = rules_[i];
        RuleStateMachine& machine = machines_[i];
        RuleStatus& status = status_[i];

        const MetricValue m = computeMetric(rule.metric, lookup(rule));
        const bool breached = m.value.has_value() && m.samples >= rule.min_samples && rule.breaches(*m.value);
        const std::optional<TimePoint> episode_since = machine.since();
        const RuleStateMachine::Step step = machine.observe(now, breached);

        status.state = machine.state();
        status.last = m;
        status.since = machine.since();
        status.last_evaluation = now;

        if (!step.changed()) {
            continue;
        }
        Transition t;
        t.rule_index = i;
        t.rule = &rule;
        t.from = step.from;
        t.to = step.to;
        t.metric = m;
        t.at = now;
        // A resolved (or reset) episode no longer has a `since` in the machine: report
        // when the episode that just ended began.
        if (machine.since()) {
            t.since = *machine.since();
        } else if (episode_since) {
            t.since = *episode_since;
        }
        if (step.to == AlertState::Firing) {
            if (rule.severity == Severity::Critical) {
                // The rollback latch: a rollback runs once per incident until re-armed.
                if (!status.latched) {
                    t.hooks_to_run = rule.hooks;
                }
                status.latched = true;
            } else {
                t.hooks_to_run = rule.hooks;
            }
        }
        transitions.push_back(std::move(t));
    }
    return transitions;
}

void Engine::rearm() {
    for (auto& status : status_) {
        status.latched = false;
    }
}

}  // namespace rollguard::rules
