#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/rules/clock.h"
#include "rollguard/rules/engine.h"

namespace rollguard::agent {

/// Where the rollout is.
enum class RolloutPhase {
    Holding,         ///< at a stage, accruing quiet time toward its hold
    AwaitingPromote, ///< hold done; the next stage has a manual gate: waits for `promote`
    Cooldown,        ///< rolled back; no promotion before cooldown_until
    Complete,        ///< the last stage was held: nothing more to do
    Failed,          ///< max_rollbacks reached: waits for `resume` (or `abort`)
    Aborted,         ///< `abort`: at 0 %, waits for `resume`
};
const char* toString(RolloutPhase phase);  ///< "holding", "awaiting_promote", "cooldown", ...

/// One entry of the rollout's history (newest last, at most 100 kept).
struct RolloutHistoryEntry {
    rules::TimePoint at{};
    std::string action;  ///< "start" | "promote" | "rollback" | "pause" | "resume" | "abort" | "complete" | "fail"
    int from_percent = 0;
    int to_percent = 0;
    std::string reason;  ///< e.g. "hold 10m passed with the gate quiet", "rule p99 fired", a command's --reason
};

/// The controller's whole persisted state.
struct RolloutState {
    int stage = -1;    ///< index into stages; -1: at 0 % (before the first stage, rolled back to zero, aborted)
    int percent = 0;   ///< stages[stage], or 0 at -1
    RolloutPhase phase = RolloutPhase::Holding;
    bool paused = false;               ///< `pause`: no promotion, no hold accrued (rollbacks still happen)
    rules::TimePoint entered_at{};     ///< when the current stage was entered
    std::chrono::nanoseconds held{0};  ///< quiet time accrued in this stage (survives restarts; downtime does not count)
    std::optional<rules::TimePoint> cooldown_until;
    int rollbacks = 0;                 ///< since the start or the last `resume` of a failed rollout
    std::uint64_t promotions = 0;      ///< moves up ever (starts included; automatic and manual)
    std::uint64_t rollbacks_total = 0; ///< rollbacks ever
    /// A rollback (or abort) happened and the next move up has not: that move carries
    /// RolloutAction::rearm. Persisted, so a restart in cooldown still re-arms.
    bool rearm_pending = false;
    std::deque<RolloutHistoryEntry> history;
};

/// What a gate rule looks like this tick: the worst state over its groups.
struct GateRule {
    std::string name;
    rules::Severity severity = rules::Severity::Critical;
    rules::AlertState state = rules::AlertState::Inactive;
};

/// A percentage change the daemon carries out: run RolloutConfig::hooks with an event
/// whose rollout_percent = to_percent (then rollback_hooks when `rollback`).
struct RolloutAction {
    /// "start" (0 % -> stages[0]: the first start, and again after a rollback to zero or
    /// an abort) | "promote" | "rollback" | "abort"
    std::string action;
    int from_percent = 0;
    int to_percent = 0;
    std::string reason;
    bool rollback = false;  ///< a rollback or an abort: rollback_hooks run too
    /// The first promotion of a new attempt after a rollback: the daemon re-arms the
    /// rules' rollback latches, so a second failure acts as the first did.
    bool rearm = false;
};

/// The progressive rollout state machine. Pure: no I/O, no threads, no clock of its own
/// (every call takes `now`), so it is tested with a manual clock. The daemon calls
/// tick() once per evaluation with the gate rules' states, carries out the actions, and
/// persists save() (atomically, 0600) after every change.
///
/// Semantics (also in docs/config.md, `[rollout]`):
///  - First start without saved state: enters stages[0] ("start" action).
///  - Holding: each tick with every gate rule quiet (inactive or resolved) adds the time
///    since the previous tick to `held`; a pending or firing gate rule resets `held` to 0
///    (the gate must stay quiet for the whole hold). The first tick after construction or
///    restore adds nothing (time the agent was down never counts). When held >= the
///    stage's hold: the last stage becomes Complete; a stage whose successor is in
///    manual_gate becomes AwaitingPromote; otherwise the next stage is entered
///    ("promote" action). At stage -1 (0 %) the hold is 0: it promotes to stages[0] on the
///    first quiet tick.
///  - A gate rule of severity critical that is firing, while percent > 0 and not in
///    cooldown, rolls back (also while paused or awaiting promote): to 0 %
///    (on_critical = zero) or to the previous stage (previous; from the first stage that
///    is 0 %), then Cooldown until now + cooldown, or Failed when max_rollbacks (> 0) is
///    reached. When the cooldown ends the phase is Holding at the stage rolled back to,
///    with held = 0; the first promotion after it carries `rearm`.
///  - Complete, Failed and Aborted do nothing on ticks (gate rules' own hooks still run).
class RolloutController {
public:
    explicit RolloutController(RolloutConfig config);

    /// Restores a save()d state. A stage whose percentage is no longer in `stages` (the
    /// config changed), or data that does not parse, is refused with `error` and the
    /// controller starts fresh. A restored rollout keeps its phase, stage and held time.
    bool restore(std::string_view saved, std::string& error);
    /// The state as JSON (a stable, versioned format: {"version":1,...}).
    std::string save() const;

    /// One evaluation. Returns the percentage changes to carry out, in order (usually none).
    std::vector<RolloutAction> tick(rules::TimePoint now, const std::vector<GateRule>& gate);

    /// Commands (rollguard rollout ..., POST /api/v1/rollout/...). Each returns ok with a
    /// one-line message, or not ok with why it was refused; a command that changes the
    /// percentage returns the action to carry out. Every accepted command is recorded in
    /// the history with `reason`.
    struct CommandResult {
        bool ok = false;
        std::string message;
        std::optional<RolloutAction> action;
    };
    /// Stops promotions and hold accrual (rollbacks still happen). Refused when already
    /// paused or Complete/Aborted.
    CommandResult pause(rules::TimePoint now, const std::string& reason);
    /// Undoes pause; on a Failed or Aborted rollout starts a new attempt from where it is
    /// (Holding, held 0, rollbacks 0). Refused when there is nothing to resume.
    CommandResult resume(rules::TimePoint now, const std::string& reason);
    /// Enters the next stage now, skipping what is left of the hold (and clearing pause);
    /// satisfies a manual gate. Refused while a gate rule of severity critical fires (as of
    /// the last tick), in cooldown, and when Complete, Failed or Aborted.
    CommandResult promote(rules::TimePoint now, const std::string& reason);
    /// Moves to 0 % (rollback_hooks run) and stops as Aborted until `resume`. Refused when
    /// already aborted.
    CommandResult abort(rules::TimePoint now, const std::string& reason);

    const RolloutState& state() const { return state_; }
    const RolloutConfig& config() const { return config_; }
    /// The hold of the current stage (0 at stage -1).
    std::chrono::nanoseconds currentHold() const;

private:
    RolloutConfig config_;
    RolloutState state_;
    std::optional<rules::TimePoint> last_tick_;  // not persisted: downtime never counts
    std::vector<GateRule> last_gate_;
};

}  // namespace rollguard::agent
