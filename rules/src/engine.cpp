#include "rollguard/rules/engine.h"

#include <algorithm>
#include <bit>
#include <iterator>
#include <set>
#include <utility>

#include "rollguard/rules/compare.h"

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

const char* toString(NotificationKind k) {
    switch (k) {
        case NotificationKind::Fire:
            return "fire";
        case NotificationKind::Repeat:
            return "repeat";
        case NotificationKind::Resolve:
            return "resolve";
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

namespace {

enum class Observation { Healthy, Breached, Hold };

Observation fromPolicy(GapPolicy p) {
    switch (p) {
        case GapPolicy::Ok:
            return Observation::Healthy;
        case GapPolicy::Breach:
            return Observation::Breached;
        case GapPolicy::Hold:
            return Observation::Hold;
    }
    return Observation::Hold;
}

int severityRank(AlertState s) {
    switch (s) {
        case AlertState::Firing:
            return 2;
        case AlertState::Pending:
            return 1;
        default:
            return 0;
    }
}

/// What one (rule, group) evaluation measured.
struct Measured {
    MetricValue metric;
    std::optional<double> threshold;
    std::optional<double> baseline;
    std::optional<MannWhitneyResult> mann_whitney;
    Observation observation = Observation::Healthy;
};

}  // namespace

Engine::Engine(std::vector<RuleSpec> rules) : rules_(std::move(rules)) {
    status_.resize(rules_.size());
    groups_.resize(rules_.size());
    dropped_.resize(rules_.size(), 0);
}

std::vector<Transition> Engine::evaluate(TimePoint now, const StatsLookup& lookup) {
    Evaluation e = evaluateGroups(now, [&lookup](const RuleSpec& rule, std::size_t) {
        std::vector<EvalInput> inputs(1);
        inputs[0].stats = lookup(rule);
        return inputs;
    });
    return std::move(e.transitions);
}

Engine::Evaluation Engine::evaluateGroups(TimePoint now, const InputLookup& lookup, bool on_tick) {
    if (!started_) {
        started_ = now;
    }
    // Criticals first, so that a warning's inhibition sees this tick's critical states;
    // the output is then put back in rule order.
    std::vector<Evaluation> per_rule(rules_.size());
    for (int pass = 0; pass < 2; ++pass) {
        const Severity wanted = pass == 0 ? Severity::Critical : Severity::Warning;
        for (std::size_t i = 0; i < rules_.size(); ++i) {
            // An M-of-N history counts ticks: between them such a rule keeps its state.
            if (rules_[i].severity == wanted && (on_tick || rules_[i].breaches_n == 0)) {
                evaluateRule(i, now, lookup(rules_[i], i), per_rule[i], on_tick);
            }
        }
    }
    Evaluation out;
    for (auto& e : per_rule) {
        std::move(e.transitions.begin(), e.transitions.end(), std::back_inserter(out.transitions));
        std::move(e.notifications.begin(), e.notifications.end(), std::back_inserter(out.notifications));
    }
    return out;
}

bool Engine::inhibitedBy(const RuleSpec& warning, const std::string& group) const {
    for (std::size_t j = 0; j < rules_.size(); ++j) {
        const RuleSpec& c = rules_[j];
        if (c.severity != Severity::Critical || c.source != warning.source) {
            continue;
        }
        for (const auto& [key, gs] : groups_[j]) {
            if (gs.state == AlertState::Firing && (key.empty() || key == group)) {
                return true;
            }
        }
    }
    return false;
}

void Engine::evaluateRule(std::size_t index, TimePoint now, std::vector<EvalInput> inputs, Evaluation& out,
                          bool on_tick) {
    const RuleSpec& rule = rules_[index];
    auto& groups = groups_[index];

    std::map<std::string, EvalInput*> by_group;
    const std::size_t cap = rule.selection.max_groups + 1;  // + "__other__"
    std::size_t known = groups.size();
    for (auto& in : inputs) {
        if (groups.find(in.group) == groups.end() && by_group.find(in.group) == by_group.end()) {
            if (known >= cap) {
                ++dropped_[index];
                continue;
            }
            ++known;
        }
        by_group[in.group] = &in;
    }
    std::set<std::string> keys;
    for (const auto& [k, v] : groups) {
        keys.insert(k);
    }
    for (const auto& [k, v] : by_group) {
        keys.insert(k);
    }
    if (keys.empty() && rule.selection.group_by.empty()) {
        keys.insert(std::string());
    }

    const TimePoint start = started_.value_or(now);
    const bool in_delay = now < start + rule.delay;

    for (const auto& key : keys) {
        detail::GroupState& gs = groups[key];
        const auto it = by_group.find(key);
        const EvalInput* input = it == by_group.end() ? nullptr : it->second;

        Measured m;
        if (input == nullptr) {
            m.observation = fromPolicy(rule.no_data);
        } else if (input->fetch_error) {
            ++gs.consecutive_errors;
            m.observation =
                gs.consecutive_errors <= rule.error_budget ? Observation::Hold : fromPolicy(rule.on_error);
        } else {
            gs.consecutive_errors = 0;
            bool has = false;
            if (rule.compare.kind == CompareKind::MannWhitney) {
                const LatencyView* canary = input->stats.latency;
                const LatencyView* base = input->baseline ? input->baseline->latency : nullptr;
                if (canary != nullptr && base != nullptr) {
                    const MannWhitneyResult r = mannWhitney(*canary, *base, rule.compare);
                    m.metric.samples = std::min(r.n_canary, r.n_baseline);
                    m.threshold = rule.compare.max_increase;
                    if (r.valid && m.metric.samples >= rule.min_samples) {
                        m.metric.value = r.effect;
                        m.mann_whitney = r;
                        has = true;
                        m.observation = r.fails ? Observation::Breached : Observation::Healthy;
                    }
                }
            } else {
                m.metric = computeMetric(rule.metric, input->stats);
                has = m.metric.value.has_value() && m.metric.samples >= rule.min_samples;
                if (!rule.isRelative()) {
                    m.threshold = rule.threshold;
                } else {
                    switch (rule.baseline.kind) {
                        case BaselineKind::Selection:
                            if (input->baseline) {
                                const MetricValue b = computeMetric(rule.metric, *input->baseline);
                                if (b.value && b.samples >= rule.min_samples) {
                                    m.baseline = b.value;
                                }
                            }
                            break;
                        case BaselineKind::File:
                            m.baseline = input->baseline_value;
                            break;
                        case BaselineKind::Learned: {
                            const TimePoint learn_from = start + rule.delay;
                            if (!gs.learned && now >= learn_from + rule.baseline.learn && gs.learn_n > 0) {
                                gs.learned = gs.learn_sum / static_cast<double>(gs.learn_n);
                            }
                            // One sample a tick, however often rules are evaluated.
                            if (!gs.learned && has && now >= learn_from && on_tick) {
                                gs.learn_sum += *m.metric.value;
                                ++gs.learn_n;
                            }
                            m.baseline = gs.learned;
                            break;
                        }
                        case BaselineKind::None:
                            break;
                    }
                    if (m.baseline) {
                        m.threshold = rule.effectiveThreshold(*m.baseline);
                    }
                }
                if (has && m.threshold) {
                    m.observation = rule.breaches(*m.metric.value, *m.threshold) ? Observation::Breached
                                                                                 : Observation::Healthy;
                } else {
                    has = false;
                }
            }
            if (!has) {
                m.observation = fromPolicy(rule.no_data);
            }
        }
        if (in_delay && m.observation == Observation::Breached) {
            m.observation = Observation::Healthy;
        }

        // --- the state machine ---
        const AlertState from = gs.state;
        AlertState reported_to = gs.state;
        const std::optional<TimePoint> episode_since = gs.since;
        if (m.observation == Observation::Hold) {
            if (gs.last_evaluation && now > *gs.last_evaluation) {
                const auto held = now - *gs.last_evaluation;
                if (gs.state == AlertState::Pending && gs.since) {
                    *gs.since += held;
                }
                if (gs.healthy_since) {
                    *gs.healthy_since += held;
                }
            }
        } else {
            const bool breached = m.observation == Observation::Breached;
            const bool m_of_n = rule.breaches_n > 0;
            int count = 0;
            if (m_of_n) {
                const int n = std::min(rule.breaches_n, 64);
                const std::uint64_t mask = n >= 64 ? ~std::uint64_t{0} : ((std::uint64_t{1} << n) - 1);
                gs.history = ((gs.history << 1) | (breached ? 1U : 0U)) & mask;
                gs.history_len = std::min(gs.history_len + 1, n);
                count = std::popcount(gs.history);
            }
            bool resolve = false;
            switch (gs.state) {
                case AlertState::Inactive:
                case AlertState::Resolved:
                    if (breached) {
                        gs.since = now;
                        const bool fire = m_of_n ? count >= rule.breaches_m : rule.for_.count() <= 0;
                        gs.state = fire ? AlertState::Firing : AlertState::Pending;
                    }
                    break;
                case AlertState::Pending:
                    if (m_of_n) {
                        if (count >= rule.breaches_m) {
                            gs.state = AlertState::Firing;
                        } else if (count == 0) {
                            gs.state = AlertState::Inactive;
                            gs.since.reset();
                        }
                    } else if (!breached) {
                        // Any gap in the breach starts the `for` clock over.
                        gs.state = AlertState::Inactive;
                        gs.since.reset();
                    } else if (gs.since && now - *gs.since >= rule.for_) {
                        gs.state = AlertState::Firing;
                    }
                    break;
                case AlertState::Firing:
                    if (breached) {
                        gs.healthy_since.reset();
                    } else if (rule.keep_firing_for.count() <= 0) {
                        resolve = true;
                    } else {
                        if (!gs.healthy_since) {
                            gs.healthy_since = now;
                        }
                        resolve = now - *gs.healthy_since >= rule.keep_firing_for;
                    }
                    break;
            }
            if (gs.state == AlertState::Firing && from != AlertState::Firing) {
                gs.firing_since = now;
                gs.healthy_since.reset();
            }
            reported_to = gs.state;
            if (resolve) {
                gs.state = AlertState::Inactive;
                reported_to = AlertState::Resolved;
                gs.since.reset();
                gs.firing_since.reset();
                gs.healthy_since.reset();
                gs.history = 0;
                gs.history_len = 0;
            }
        }
        gs.last_evaluation = now;

        // --- notifications ---
        const bool critical = rule.severity == Severity::Critical;
        const bool inhibited = !critical && gs.state == AlertState::Firing && inhibitedBy(rule, key);
        auto notify = [&](NotificationKind kind) {
            Notification n;
            n.rule_index = index;
            n.rule = &rule;
            n.group = key;
            n.kind = kind;
            n.dry_run = rule.dry_run;
            n.metric = m.metric;
            n.threshold = m.threshold;
            n.baseline = m.baseline;
            n.mann_whitney = m.mann_whitney;
            n.at = now;
            n.since = gs.since ? *gs.since : episode_since.value_or(now);
            return n;
        };
        std::vector<std::string> hooks_now;
        if (reported_to == AlertState::Firing && from != AlertState::Firing) {
            Notification n = notify(NotificationKind::Fire);
            if (critical) {
                n.latched = gs.latched;
                if (!gs.latched) {
                    hooks_now = rule.hooks;
                }
                // Only an episode whose fire notified gets a resolved notification: a
                // latched re-fire sent nothing, so its resolve has nothing to end.
                gs.notified = !gs.latched;
                // The rollback latch: a rollback runs once per incident until re-armed.
                gs.latched = true;
            } else {
                n.inhibited = inhibited;
                if (!inhibited) {
                    hooks_now = rule.hooks;
                    gs.notified = true;
                    gs.last_notified = now;
                }
            }
            if (rule.dry_run) {
                hooks_now.clear();
            }
            n.hooks = hooks_now;
            out.notifications.push_back(std::move(n));
        } else if (!critical && gs.state == AlertState::Firing && !inhibited) {
            if (!gs.notified) {
                // The inhibiting critical resolved while this warning still fires.
                Notification n = notify(NotificationKind::Fire);
                n.hooks = rule.dry_run ? std::vector<std::string>{} : rule.hooks;
                gs.notified = true;
                gs.last_notified = now;
                out.notifications.push_back(std::move(n));
            } else if (gs.last_notified && now - *gs.last_notified >= rule.repeat_interval) {
                Notification n = notify(NotificationKind::Repeat);
                n.hooks = rule.dry_run ? std::vector<std::string>{} : rule.hooks;
                gs.last_notified = now;
                out.notifications.push_back(std::move(n));
            }
        } else if (reported_to == AlertState::Resolved) {
            if (critical || gs.notified) {
                Notification n = notify(NotificationKind::Resolve);
                n.latched = gs.latched;
                if (!rule.dry_run) {
                    if (!critical) {
                        n.hooks = rule.hooks;
                    } else if (gs.notified) {
                        // The rollback actions never run again on resolve; the
                        // notifications (Alertmanager, webhooks) are told it ended.
                        n.hooks = rule.resolve_hooks;
                    }
                }
                out.notifications.push_back(std::move(n));
            }
            gs.notified = false;
            gs.last_notified.reset();
        }

        RuleStatus& st = gs.status;
        st.state = gs.state;
        st.last = m.metric;
        st.since = gs.since;
        st.firing_since = gs.firing_since;
        st.last_evaluation = now;
        st.latched = gs.latched;
        st.group = key;
        st.threshold = m.threshold;
        st.inhibited = inhibited;
        st.baseline = m.baseline;
        st.mann_whitney = m.mann_whitney;
        st.learning = rule.baseline.kind == BaselineKind::Learned && !gs.learned;
        st.notified = gs.notified;

        if (reported_to != from) {
            Transition t;
            t.rule_index = index;
            t.rule = &rule;
            t.from = from;
            t.to = reported_to;
            t.metric = m.metric;
            t.at = now;
            // A resolved (or reset) episode no longer has a `since`: report when the
            // episode that just ended began.
            if (gs.since) {
                t.since = *gs.since;
            } else if (episode_since) {
                t.since = *episode_since;
            }
            t.hooks_to_run = std::move(hooks_now);
            t.group = key;
            t.threshold = m.threshold;
            t.baseline = m.baseline;
            t.mann_whitney = m.mann_whitney;
            t.dry_run = rule.dry_run;
            t.inhibited = inhibited;
            out.transitions.push_back(std::move(t));
        }
    }
    refreshSummary(index);
}

void Engine::refreshSummary(std::size_t index) {
    const auto& groups = groups_[index];
    RuleStatus summary;
    bool any = false;
    bool latched = false;
    for (const auto& [key, gs] : groups) {
        latched = latched || gs.latched;
        if (!any || severityRank(gs.status.state) > severityRank(summary.state)) {
            summary = gs.status;
            any = true;
        }
    }
    summary.latched = latched;
    status_[index] = summary;
}

std::vector<RuleStatus> Engine::groupStatuses(std::size_t rule_index) const {
    std::vector<RuleStatus> out;
    for (const auto& [key, gs] : groups_.at(rule_index)) {
        out.push_back(gs.status);
        out.back().latched = gs.latched;
    }
    return out;
}

void Engine::rearm() {
    for (auto& groups : groups_) {
        for (auto& [key, gs] : groups) {
            gs.latched = false;
            gs.status.latched = false;
        }
    }
    for (auto& status : status_) {
        status.latched = false;
    }
}

}  // namespace rollguard::rules
