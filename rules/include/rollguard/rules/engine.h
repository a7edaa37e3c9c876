#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rollguard/rules/clock.h"
#include "rollguard/rules/compare.h"
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
    /// incident. Warnings notify every time they fire (unless inhibited). Always empty
    /// for a dry_run rule.
    std::vector<std::string> hooks_to_run;
    std::string group{};                ///< "" for an ungrouped rule
    std::optional<double> threshold{};  ///< effective threshold (after baseline); nullopt: unknown
    bool dry_run = false;               ///< the rule is dry_run: hooks_to_run is empty on purpose
    bool inhibited = false;             ///< a warning silenced by a firing critical
    std::optional<double> baseline{};   ///< a relative threshold's baseline value, when known
    /// A compare rule's test at this evaluation (metric.value is its effect); nullopt
    /// for other rules and when the comparison had no data.
    std::optional<MannWhitneyResult> mann_whitney{};
};

/// The input of one (rule, group) evaluation. `baseline` carries the baseline selection's
/// stats (BaselineKind::Selection and compare rules); `baseline_value` the number read
/// from a baseline file; `fetch_error` marks a failed scrape/query for this input (its
/// stats are then ignored).
struct EvalInput {
    std::string group;
    SeriesStats stats;
    std::optional<SeriesStats> baseline;
    std::optional<double> baseline_value;
    bool fetch_error = false;
};

enum class NotificationKind { Fire, Repeat, Resolve };
const char* toString(NotificationKind k);

/// A message the agent should deliver: a rule fired (critical: run the rollback hooks,
/// once per incident; warning: notify), a firing warning repeats after repeat_interval,
/// a rule resolved. `hooks` is what to run now: empty when dry_run, inhibited or latched.
/// A critical rule's Resolve runs RuleSpec::resolve_hooks (its notification hooks, never
/// its rollback actions), and only when the episode's Fire ran hooks (not latched); a
/// warning's Resolve runs `hooks` when its Fire was sent.
struct Notification {
    std::size_t rule_index = 0;
    const RuleSpec* rule = nullptr;
    std::string group;
    NotificationKind kind = NotificationKind::Fire;
    std::vector<std::string> hooks;
    bool dry_run = false;    ///< would have run `rule->hooks`; runs nothing
    bool inhibited = false;  ///< a warning silenced by a firing critical: send nothing
    bool latched = false;    ///< critical whose rollback already ran this incident
    MetricValue metric;
    std::optional<double> threshold;
    TimePoint at{};
    TimePoint since{};  ///< when the breach began
    std::optional<double> baseline{};                 ///< as in Transition
    std::optional<MannWhitneyResult> mann_whitney{};  ///< as in Transition
};

/// Current status of one rule (or one group of a rule), for logs, /metrics and the status API.
struct RuleStatus {
    AlertState state = AlertState::Inactive;
    MetricValue last;
    std::optional<TimePoint> since;
    std::optional<TimePoint> last_evaluation;
    bool latched = false;  ///< critical rule whose rollback has run
    std::string group{};
    std::optional<TimePoint> firing_since{};
    std::optional<double> threshold{};  ///< effective threshold at the last evaluation
    bool inhibited = false;
    bool learning = false;              ///< a learned baseline is still being learned
    std::optional<double> baseline{};   ///< the baseline value in use, if any
    std::optional<MannWhitneyResult> mann_whitney{};  ///< a compare rule's last test with data
    /// This firing episode's fire ran hooks (a critical not latched, a warning not
    /// inhibited): its resolve notifies.
    bool notified = false;
};

namespace detail {

/// The state of one (rule, group): the machine, the M-of-N history, timers, latch,
/// learned baseline and notification bookkeeping. Internal to Engine.
struct GroupState {
    AlertState state = AlertState::Inactive;
    std::optional<TimePoint> since;
    std::optional<TimePoint> firing_since;
    std::optional<TimePoint> healthy_since;  ///< keep_firing_for: first healthy evaluation while firing
    std::uint64_t history = 0;               ///< M-of-N: bit i = evaluation i ago breached
    int history_len = 0;
    std::int64_t consecutive_errors = 0;
    bool latched = false;
    bool notified = false;                   ///< a non-inhibited Fire was sent this episode
    std::optional<TimePoint> last_notified;
    std::optional<TimePoint> last_evaluation;
    // learned baseline
    double learn_sum = 0.0;
    std::int64_t learn_n = 0;
    std::optional<double> learned;
    RuleStatus status;
};

}  // namespace detail

/// Evaluates every rule on each tick. Owns one state per (rule, group): machine, M-of-N
/// history, timers, rollback latch, learned baseline, notification times.
/// Pure: statistics come from the caller's lookup, time from the caller's `now`.
/// Not thread-safe; the agent's evaluation thread owns it.
///
/// Timing semantics (all relative to the `now` passed in):
///  - `for`: Inactive -> Pending on the first breach (since = now); Pending -> Firing once
///    now - since >= for (exactly at the boundary fires); a healthy evaluation in Pending
///    goes back to Inactive. for = 0 fires on the first breach.
///  - `breaches = "M of N"` (instead of `for`): the last N evaluations are remembered;
///    a breach with fewer than M breaches among them is Pending, M or more is Firing;
///    Pending goes back to Inactive when none of the last N breached.
///  - `keep_firing_for`: a firing rule resolves only after evaluations have been healthy
///    continuously for this long (the first healthy evaluation starts the clock; a breach
///    stops it). 0: the first healthy evaluation resolves.
///  - no data (no value, or samples < min_samples, or no baseline yet) follows `no_data`;
///    a fetch error follows `on_error` once more than `error_budget` consecutive errors
///    were seen (the tolerated ones are held). Hold keeps the state and shifts the running
///    timers (since / healthy-since) by the held time, so held time never counts toward
///    `for` or `keep_firing_for`; M-of-N history is not advanced.
///  - `delay`: evaluations before start + delay are reported but count as healthy: a rule
///    cannot go pending, let alone fire, during the service's warm-up, and its `for`
///    clock starts at the first breach after the delay. Start is the first evaluation's
///    `now` unless start() is called.
///  - critical: a rollback runs once per incident (latched until rearm(); persisted).
///    Its resolve notifies (resolve_hooks) when its fire ran the hooks; a latched re-fire
///    runs nothing and its resolve neither. rearm() ends no episode: a firing rule stays
///    firing (and notified) and resolves as usual.
///    warning: Fire on firing, Repeat every repeat_interval while firing, Resolve when it
///    resolves (only if a Fire was sent). A firing critical inhibits warnings of the same
///    source whose group equals the critical's group (an ungrouped critical inhibits all
///    groups): they keep evaluating, report `inhibited` and send nothing; when the
///    inhibition ends while still firing, the warning's Fire is sent then.
///  - dry_run: evaluated and reported like any rule; notifications and transitions carry
///    dry_run = true and no hooks. The latch still applies (it reports what would run).
///  - groups: at most selection.max_groups + 1 (for "__other__") distinct groups are kept
///    per rule; inputs beyond that are dropped and counted (droppedInputs()).
class Engine {
public:
    explicit Engine(std::vector<RuleSpec> rules);

    using StatsLookup = std::function<SeriesStats(const RuleSpec&)>;
    /// The inputs of one rule at this tick, one per group (a single "" group when the rule
    /// is not grouped). A group absent from the list is evaluated as no data.
    using InputLookup = std::function<std::vector<EvalInput>(const RuleSpec&, std::size_t rule_index)>;

    struct Evaluation {
        std::vector<Transition> transitions;      ///< state changes, rule order then group order
        std::vector<Notification> notifications;  ///< what to deliver, same order
    };

    /// Evaluates all rules at `now`; returns the transitions (state changes) in rule order.
    /// Each rule is evaluated as one ungrouped input.
    std::vector<Transition> evaluate(TimePoint now, const StatsLookup& lookup);

    /// Evaluates all rules at `now`, per group. Critical rules are evaluated before
    /// warnings so that inhibition uses this tick's critical states.
    /// `on_tick` = false: an evaluation between two ticks (the agent evaluates several
    /// times a tick). Everything time-based applies as on a tick (`for`, keep_firing_for,
    /// delay, a learned baseline freezing); what counts evaluations does not move: M-of-N
    /// rules are skipped (they keep their state) and a learned baseline takes no sample.
    Evaluation evaluateGroups(TimePoint now, const InputLookup& lookup, bool on_tick = true);

    /// Sets the start time `delay` and baseline learning count from (default: the first
    /// evaluation's `now`).
    void start(TimePoint t) { started_ = t; }

    const std::vector<RuleSpec>& rules() const { return rules_; }
    /// A rule's summary: its most severe group (firing > pending > inactive; ties: the
    /// first group in key order); `latched` when any group is latched.
    const RuleStatus& status(std::size_t rule_index) const { return status_.at(rule_index); }
    /// Every group of a rule, in group key order.
    std::vector<RuleStatus> groupStatuses(std::size_t rule_index) const;
    /// Inputs dropped because the rule already had max_groups + 1 groups.
    std::uint64_t droppedInputs(std::size_t rule_index) const { return dropped_.at(rule_index); }

    /// Clears the rollback latch of every rule (manual re-arm). States are kept: a firing
    /// rule stays firing and its resolve still notifies.
    void rearm();

    /// Serialises the persistent state (see restoreState) to an opaque byte string.
    std::string saveState() const;
    /// Restores state saved by saveState(), following Prometheus' `for` restoration:
    ///  - a rule that was pending resumes pending with its original since, so a restart
    ///    does not reset a 10-minute `for` (time spent down counts toward `for`);
    ///  - a firing rule resumes firing with its firing-since; a latched critical stays
    ///    latched, so a restart mid-incident never rolls back twice;
    ///  - M-of-N history, keep_firing_for clock, learned baselines (frozen or in progress)
    ///    and the last notification times are restored; the start time too, so `delay`
    ///    and learning windows are not restarted;
    ///  - state of rules no longer in the config is dropped; a rule whose definition
    ///    changed (RuleSpec::specHash) starts fresh;
    ///  - input with a wrong version byte, truncated or corrupt is refused (false) and
    ///    nothing changes. `now` caps restored times (a since in the future is clamped).
    bool restoreState(std::string_view data, TimePoint now);

private:
    void evaluateRule(std::size_t index, TimePoint now, std::vector<EvalInput> inputs, Evaluation& out,
                      bool on_tick);
    void refreshSummary(std::size_t index);
    bool inhibitedBy(const RuleSpec& warning, const std::string& group) const;

    std::vector<RuleSpec> rules_;
    std::vector<RuleStatus> status_;
    std::vector<std::map<std::string, detail::GroupState>> groups_;
    std::vector<std::uint64_t> dropped_;
    std::optional<TimePoint> started_;
};

}  // namespace rollguard::rules
