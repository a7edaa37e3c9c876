#include "rollguard/agent/rollout.h"

#include <algorithm>
#include <limits>

#include <simdjson.h>

#include "rollguard/agent/json_writer.h"
#include "rollguard/rules/duration.h"
#include "util/unix_time.h"

namespace rollguard::agent {

const char* toString(RolloutPhase phase) {
    switch (phase) {
        case RolloutPhase::Holding:
            return "holding";
        case RolloutPhase::AwaitingPromote:
            return "awaiting_promote";
        case RolloutPhase::Cooldown:
            return "cooldown";
        case RolloutPhase::Complete:
            return "complete";
        case RolloutPhase::Failed:
            return "failed";
        case RolloutPhase::Aborted:
            return "aborted";
    }
    return "unknown";
}

namespace {

constexpr std::size_t kMaxHistory = 100;
constexpr std::int64_t kStateVersion = 1;

std::optional<RolloutPhase> phaseFromString(std::string_view s) {
    for (auto p : {RolloutPhase::Holding, RolloutPhase::AwaitingPromote, RolloutPhase::Cooldown,
                   RolloutPhase::Complete, RolloutPhase::Failed, RolloutPhase::Aborted}) {
        if (s == toString(p)) {
            return p;
        }
    }
    return std::nullopt;
}

bool quiet(rules::AlertState s) {
    return s == rules::AlertState::Inactive || s == rules::AlertState::Resolved;
}

/// The first gate rule of severity critical that is firing, or nullptr.
const GateRule* firingCritical(const std::vector<GateRule>& gate) {
    for (const auto& rule : gate) {
        if (rule.severity == rules::Severity::Critical && rule.state == rules::AlertState::Firing) {
            return &rule;
        }
    }
    return nullptr;
}

namespace dom = simdjson::dom;

/// One pass over an object's fields; `fn(key, value)` returns false to fail the parse.
template <typename Fn>
bool eachField(dom::element v, Fn&& fn) {
    dom::object object;
    if (v.get_object().get(object) != simdjson::SUCCESS) {
        return false;
    }
    for (auto field : object) {
        if (!fn(std::string(field.key), field.value)) {
            return false;
        }
    }
    return true;
}

bool readInt(dom::element v, std::int64_t& out) {
    return v.get_int64().get(out) == simdjson::SUCCESS;
}

bool readUint(dom::element v, std::uint64_t& out) {
    return v.get_uint64().get(out) == simdjson::SUCCESS;
}

bool readBool(dom::element v, bool& out) {
    return v.get_bool().get(out) == simdjson::SUCCESS;
}

bool readString(dom::element v, std::string& out) {
    std::string_view s;
    if (v.get_string().get(s) != simdjson::SUCCESS) {
        return false;
    }
    out = std::string(s);
    return true;
}

bool readPercent(dom::element v, int& out) {
    std::int64_t i = 0;
    if (!readInt(v, i) || i < 0 || i > 100) {
        return false;
    }
    out = static_cast<int>(i);
    return true;
}

bool readHistoryEntry(dom::element v, RolloutHistoryEntry& e) {
    bool has_action = false;
    const bool ok = eachField(v, [&](const std::string& key, dom::element value) {
        std::int64_t i = 0;
        if (key == "at_unix_ns") {
            if (!readInt(value, i)) {
                return false;
            }
            e.at = fromUnixNanos(i);
            return true;
        }
        if (key == "action") {
            has_action = true;
            return readString(value, e.action);
        }
        if (key == "from") {
            return readPercent(value, e.from_percent);
        }
        if (key == "to") {
            return readPercent(value, e.to_percent);
        }
        if (key == "reason") {
            return readString(value, e.reason);
        }
        return true;  // "at" (RFC 3339, for people) and keys of later versions
    });
    return ok && has_action;
}

}  // namespace

RolloutController::RolloutController(RolloutConfig config) : config_(std::move(config)) {}

std::chrono::nanoseconds RolloutController::currentHold() const {
    if (state_.stage < 0 || config_.hold.empty()) {
        return std::chrono::nanoseconds{0};
    }
    const auto i = static_cast<std::size_t>(state_.stage);
    return i < config_.hold.size() ? config_.hold[i] : config_.hold.back();
}

namespace {

/// The stage index of `percent` in `stages`: -1 for 0 %, nullopt when it is not a stage.
std::optional<int> stageOf(const std::vector<int>& stages, int percent) {
    if (percent == 0) {
        return -1;
    }
    const auto it = std::find(stages.begin(), stages.end(), percent);
    if (it == stages.end()) {
        return std::nullopt;
    }
    return static_cast<int>(it - stages.begin());
}

bool manualGate(const RolloutConfig& config, int percent) {
    return std::find(config.manual_gate.begin(), config.manual_gate.end(), percent) != config.manual_gate.end();
}

void record(RolloutState& state, rules::TimePoint at, std::string action, int from, int to, std::string reason) {
    state.history.push_back(RolloutHistoryEntry{at, std::move(action), from, to, std::move(reason)});
    while (state.history.size() > kMaxHistory) {
        state.history.pop_front();
    }
}

}  // namespace

bool RolloutController::restore(std::string_view saved, std::string& error) {
    last_tick_.reset();
    last_gate_.clear();
    // The DOM parser validates the whole document (trailing garbage included).
    dom::parser parser;
    dom::element root;
    RolloutState s;
    std::int64_t version = 0;
    bool has_percent = false;
    bool has_phase = false;
    std::string why;
    bool parsed = parser.parse(saved.data(), saved.size()).get(root) == simdjson::SUCCESS;
    if (parsed) {
        parsed = eachField(root, [&](const std::string& key, dom::element value) {
            std::int64_t i = 0;
            if (key == "version") {
                return readInt(value, version);
            }
            if (key == "percent") {
                has_percent = true;
                return readPercent(value, s.percent);
            }
            if (key == "phase") {
                std::string text;
                if (!readString(value, text)) {
                    return false;
                }
                const auto phase = phaseFromString(text);
                if (!phase) {
                    why = "unknown phase \"" + text + "\"";
                    return false;
                }
                s.phase = *phase;
                has_phase = true;
                return true;
            }
            if (key == "paused") {
                return readBool(value, s.paused);
            }
            if (key == "entered_at_unix_ns") {
                if (!readInt(value, i)) {
                    return false;
                }
                s.entered_at = fromUnixNanos(i);
                return true;
            }
            if (key == "held_ns") {
                if (!readInt(value, i) || i < 0) {
                    return false;
                }
                s.held = std::chrono::nanoseconds{i};
                return true;
            }
            if (key == "cooldown_until_unix_ns") {
                if (value.is_null()) {
                    return true;
                }
                if (!readInt(value, i)) {
                    return false;
                }
                s.cooldown_until = fromUnixNanos(i);
                return true;
            }
            if (key == "rollbacks") {
                if (!readInt(value, i) || i < 0 || i > std::numeric_limits<int>::max()) {
                    return false;
                }
                s.rollbacks = static_cast<int>(i);
                return true;
            }
            if (key == "promotions") {
                return readUint(value, s.promotions);
            }
            if (key == "rollbacks_total") {
                return readUint(value, s.rollbacks_total);
            }
            if (key == "rearm_pending") {
                return readBool(value, s.rearm_pending);
            }
            if (key == "history") {
                dom::array array;
                if (value.get_array().get(array) != simdjson::SUCCESS) {
                    return false;
                }
                for (dom::element item : array) {
                    RolloutHistoryEntry e;
                    if (!readHistoryEntry(item, e)) {
                        return false;
                    }
                    s.history.push_back(std::move(e));
                    while (s.history.size() > kMaxHistory) {
                        s.history.pop_front();
                    }
                }
                return true;
            }
            return true;  // "stage" (recomputed from percent), RFC 3339 twins, later keys
        });
    }
    state_ = RolloutState{};
    if (!parsed || !has_percent || !has_phase) {
        error = "not a rollout state" + (why.empty() ? std::string(": not JSON or a field is missing or malformed")
                                                     : ": " + why);
        return false;
    }
    if (version != kStateVersion) {
        error = "unsupported rollout state version " + std::to_string(version);
        return false;
    }
    const auto stage = stageOf(config_.stages, s.percent);
    if (!stage) {
        error = "the saved rollout is at " + std::to_string(s.percent) +
                " %, which is no longer one of the stages: starting fresh";
        return false;
    }
    if (s.phase == RolloutPhase::Cooldown && !s.cooldown_until) {
        error = "not a rollout state: cooldown without cooldown_until";
        return false;
    }
    s.stage = *stage;
    const int last = static_cast<int>(config_.stages.size()) - 1;
    if (s.phase == RolloutPhase::Complete && s.stage != last) {
        // Stages were added after the saved rollout completed: carry on from its stage.
        s.phase = RolloutPhase::Holding;
    }
    if (s.phase == RolloutPhase::AwaitingPromote &&
        (s.stage == last || !manualGate(config_, config_.stages[static_cast<std::size_t>(s.stage + 1)]))) {
        // The next stage lost its manual gate: the hold is done, so it promotes on a quiet tick.
        s.phase = RolloutPhase::Holding;
    }
    if (s.phase != RolloutPhase::Cooldown) {
        s.cooldown_until.reset();
    }
    state_ = std::move(s);
    return true;
}

std::string RolloutController::save() const {
    JsonWriter w;
    w.beginObject();
    w.key("version").value(kStateVersion);
    w.key("stage").value(state_.stage);
    w.key("percent").value(state_.percent);
    w.key("phase").value(toString(state_.phase));
    w.key("paused").value(state_.paused);
    w.key("entered_at").value(formatRfc3339(state_.entered_at));
    w.key("entered_at_unix_ns").value(unixNanos(state_.entered_at));
    w.key("held_ns").value(static_cast<std::int64_t>(state_.held.count()));
    if (state_.cooldown_until) {
        w.key("cooldown_until").value(formatRfc3339(*state_.cooldown_until));
        w.key("cooldown_until_unix_ns").value(unixNanos(*state_.cooldown_until));
    }
    w.key("rollbacks").value(state_.rollbacks);
    w.key("promotions").value(state_.promotions);
    w.key("rollbacks_total").value(state_.rollbacks_total);
    w.key("rearm_pending").value(state_.rearm_pending);
    w.key("history").beginArray();
    for (const auto& e : state_.history) {
        w.beginObject();
        w.key("at").value(formatRfc3339(e.at));
        w.key("at_unix_ns").value(unixNanos(e.at));
        w.key("action").value(e.action);
        w.key("from").value(e.from_percent);
        w.key("to").value(e.to_percent);
        w.key("reason").value(e.reason);
        w.endObject();
    }
    w.endArray();
    w.endObject();
    return w.str();
}

namespace {

/// Moves `state` one stage up (from -1: into stages[0], a "start") and returns the action.
RolloutAction moveUp(RolloutState& state, const RolloutConfig& config, rules::TimePoint now,
                     const std::string& reason) {
    RolloutAction a;
    a.action = state.stage < 0 ? "start" : "promote";
    a.from_percent = state.percent;
    state.stage += 1;
    state.percent = config.stages[static_cast<std::size_t>(state.stage)];
    a.to_percent = state.percent;
    a.reason = reason;
    a.rearm = state.rearm_pending;
    state.rearm_pending = false;
    state.phase = RolloutPhase::Holding;
    state.paused = false;
    state.entered_at = now;
    state.held = std::chrono::nanoseconds{0};
    state.cooldown_until.reset();
    state.promotions += 1;
    record(state, now, a.action, a.from_percent, a.to_percent, reason);
    return a;
}

}  // namespace

std::vector<RolloutAction> RolloutController::tick(rules::TimePoint now, const std::vector<GateRule>& gate) {
    std::vector<RolloutAction> actions;
    auto dt = last_tick_ ? now - *last_tick_ : std::chrono::nanoseconds{0};
    if (dt.count() < 0) {
        dt = std::chrono::nanoseconds{0};  // the wall clock stepped back: count nothing
    }
    last_tick_ = now;
    last_gate_ = gate;
    if (config_.stages.empty()) {
        return actions;
    }
    auto& s = state_;
    if (s.phase == RolloutPhase::Complete || s.phase == RolloutPhase::Failed || s.phase == RolloutPhase::Aborted) {
        return actions;
    }

    const GateRule* critical = firingCritical(gate);
    if (critical && s.percent > 0 && s.phase != RolloutPhase::Cooldown) {
        RolloutAction a;
        a.action = "rollback";
        a.rollback = true;
        a.from_percent = s.percent;
        a.reason = "rule " + critical->name + " fired";
        if (config_.on_critical == RolloutConfig::OnCritical::Previous && s.stage > 0) {
            s.stage -= 1;
            s.percent = config_.stages[static_cast<std::size_t>(s.stage)];
        } else {
            s.stage = -1;
            s.percent = 0;
        }
        a.to_percent = s.percent;
        s.entered_at = now;
        s.held = std::chrono::nanoseconds{0};
        s.rollbacks += 1;
        s.rollbacks_total += 1;
        s.rearm_pending = true;
        record(s, now, "rollback", a.from_percent, a.to_percent, a.reason);
        if (config_.max_rollbacks > 0 && s.rollbacks >= config_.max_rollbacks) {
            s.phase = RolloutPhase::Failed;
            s.cooldown_until.reset();
            record(s, now, "fail", a.to_percent, a.to_percent,
                   std::to_string(s.rollbacks) + " rollbacks (max_rollbacks " + std::to_string(config_.max_rollbacks) +
                       ")");
        } else {
            s.phase = RolloutPhase::Cooldown;
            s.cooldown_until = now + config_.cooldown;
        }
        actions.push_back(std::move(a));
        return actions;
    }

    if (s.phase == RolloutPhase::Cooldown) {
        if (s.cooldown_until && now < *s.cooldown_until) {
            return actions;
        }
        // The cooldown's time is not part of any hold: the stage is held afresh from now.
        s.phase = RolloutPhase::Holding;
        s.cooldown_until.reset();
        s.held = std::chrono::nanoseconds{0};
        dt = std::chrono::nanoseconds{0};
    }
    if (s.phase != RolloutPhase::Holding) {
        return actions;  // AwaitingPromote: only `promote` (or a rollback) moves it
    }

    const bool gate_quiet = std::all_of(gate.begin(), gate.end(), [](const GateRule& r) { return quiet(r.state); });
    if (!gate_quiet) {
        s.held = std::chrono::nanoseconds{0};
        return actions;
    }
    if (s.paused) {
        return actions;
    }
    s.held += dt;
    const auto hold = currentHold();
    if (s.held < hold) {
        return actions;
    }
    const int last = static_cast<int>(config_.stages.size()) - 1;
    const std::string reason = s.stage < 0 ? std::string("gate quiet")
                                           : "hold " + rules::formatDuration(hold) + " passed with the gate quiet";
    if (s.stage >= last) {
        s.phase = RolloutPhase::Complete;
        record(s, now, "complete", s.percent, s.percent, reason);
        return actions;
    }
    if (manualGate(config_, config_.stages[static_cast<std::size_t>(s.stage + 1)])) {
        s.phase = RolloutPhase::AwaitingPromote;
        return actions;
    }
    actions.push_back(moveUp(s, config_, now, reason));
    return actions;
}

RolloutController::CommandResult RolloutController::pause(rules::TimePoint now, const std::string& reason) {
    CommandResult r;
    if (state_.paused) {
        r.message = "the rollout is already paused";
        return r;
    }
    if (state_.phase == RolloutPhase::Complete || state_.phase == RolloutPhase::Aborted) {
        r.message = std::string("the rollout is ") + toString(state_.phase) + ": nothing to pause";
        return r;
    }
    state_.paused = true;
    record(state_, now, "pause", state_.percent, state_.percent, reason);
    r.ok = true;
    r.message = "paused at " + std::to_string(state_.percent) + " %";
    return r;
}

RolloutController::CommandResult RolloutController::resume(rules::TimePoint now, const std::string& reason) {
    CommandResult r;
    auto& s = state_;
    if (s.phase == RolloutPhase::Failed || s.phase == RolloutPhase::Aborted) {
        const char* was = toString(s.phase);
        s.phase = RolloutPhase::Holding;
        s.paused = false;
        s.held = std::chrono::nanoseconds{0};
        s.rollbacks = 0;
        s.cooldown_until.reset();
        s.entered_at = now;
        record(s, now, "resume", s.percent, s.percent, reason);
        r.ok = true;
        r.message = std::string("resumed the ") + was + " rollout at " + std::to_string(s.percent) + " %";
    } else if (s.paused) {
        s.paused = false;
        record(s, now, "resume", s.percent, s.percent, reason);
        r.ok = true;
        r.message = "resumed at " + std::to_string(s.percent) + " %";
    } else {
        r.message = std::string("nothing to resume: the rollout is ") + toString(s.phase) + ", not paused";
        return r;
    }
    // The time spent paused or stopped is not part of the hold.
    if (last_tick_) {
        last_tick_ = now;
    }
    return r;
}

RolloutController::CommandResult RolloutController::promote(rules::TimePoint now, const std::string& reason) {
    CommandResult r;
    auto& s = state_;
    switch (s.phase) {
        case RolloutPhase::Complete:
        case RolloutPhase::Failed:
        case RolloutPhase::Aborted:
            r.message = std::string("the rollout is ") + toString(s.phase) + ": nothing to promote" +
                        (s.phase == RolloutPhase::Complete ? "" : " (resume it first)");
            return r;
        case RolloutPhase::Cooldown:
            r.message = "the rollout is in cooldown" +
                        (s.cooldown_until ? " until " + formatRfc3339(*s.cooldown_until) : std::string()) +
                        " after a rollback";
            return r;
        case RolloutPhase::Holding:
        case RolloutPhase::AwaitingPromote:
            break;
    }
    if (const GateRule* critical = firingCritical(last_gate_)) {
        r.message = "refused: critical rule " + critical->name + " is firing";
        return r;
    }
    if (config_.stages.empty()) {
        r.message = "no stages";
        return r;
    }
    const int last = static_cast<int>(config_.stages.size()) - 1;
    if (s.stage >= last) {
        s.phase = RolloutPhase::Complete;
        s.paused = false;
        record(s, now, "complete", s.percent, s.percent, reason);
        r.ok = true;
        r.message = "the last stage (" + std::to_string(s.percent) + " %) is complete";
        return r;
    }
    r.action = moveUp(s, config_, now, reason);
    r.ok = true;
    r.message = "promoted from " + std::to_string(r.action->from_percent) + " % to " +
                std::to_string(r.action->to_percent) + " %";
    return r;
}

RolloutController::CommandResult RolloutController::abort(rules::TimePoint now, const std::string& reason) {
    CommandResult r;
    auto& s = state_;
    if (s.phase == RolloutPhase::Aborted) {
        r.message = "the rollout is already aborted";
        return r;
    }
    RolloutAction a;
    a.action = "abort";
    a.rollback = true;
    a.from_percent = s.percent;
    a.to_percent = 0;
    a.reason = reason;
    s.stage = -1;
    s.percent = 0;
    s.phase = RolloutPhase::Aborted;
    s.paused = false;
    s.held = std::chrono::nanoseconds{0};
    s.cooldown_until.reset();
    s.entered_at = now;
    s.rearm_pending = true;
    record(s, now, "abort", a.from_percent, 0, reason);
    r.ok = true;
    r.message = "aborted: " + std::to_string(a.from_percent) + " % -> 0 %";
    r.action = std::move(a);
    return r;
}

}  // namespace rollguard::agent
