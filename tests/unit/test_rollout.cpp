#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/agent/rollout.h"
#include "rollguard/rules/clock.h"

using namespace std::chrono_literals;
using rollguard::agent::GateRule;
using rollguard::agent::RolloutAction;
using rollguard::agent::RolloutConfig;
using rollguard::agent::RolloutController;
using rollguard::agent::RolloutPhase;
using rollguard::rules::AlertState;
using rollguard::rules::ManualClock;
using rollguard::rules::Severity;

namespace {

/// stages 5, 25, 50, 100; hold 10m each; cooldown 10m; max_rollbacks 3; on_critical zero.
RolloutConfig config() {
    RolloutConfig c;
    c.stages = {5, 25, 50, 100};
    c.hold = {10min, 10min, 10min, 10min};
    c.cooldown = 10min;
    c.max_rollbacks = 3;
    c.hooks = {"percent"};
    return c;
}

/// The gate of these tests: a critical rule "errors" and a warning rule "slow".
std::vector<GateRule> gate(AlertState errors = AlertState::Inactive, AlertState slow = AlertState::Inactive) {
    return {GateRule{"errors", Severity::Critical, errors}, GateRule{"slow", Severity::Warning, slow}};
}

/// Ticks every minute for `d` with the gate `g`; returns every action.
std::vector<RolloutAction> run(RolloutController& c, ManualClock& clock, std::chrono::minutes d,
                               const std::vector<GateRule>& g = gate()) {
    std::vector<RolloutAction> all;
    for (auto t = 0min; t < d; t += 1min) {
        clock.advance(1min);
        for (auto& a : c.tick(clock.now(), g)) {
            all.push_back(std::move(a));
        }
    }
    return all;
}

/// A started controller at 5 % (the first tick's "start").
RolloutController started(ManualClock& clock, RolloutConfig cfg = config()) {
    RolloutController c(std::move(cfg));
    const auto actions = c.tick(clock.now(), gate());
    REQUIRE(actions.size() == 1);
    REQUIRE(c.state().stage == 0);
    return c;
}

}  // namespace

TEST_CASE("rollout: the first quiet tick starts at stages[0]", "[rollout]") {
    ManualClock clock;
    RolloutController c(config());
    CHECK(c.state().stage == -1);
    CHECK(c.state().percent == 0);
    const auto actions = c.tick(clock.now(), gate());
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].action == "start");
    CHECK(actions[0].from_percent == 0);
    CHECK(actions[0].to_percent == 5);
    CHECK_FALSE(actions[0].rollback);
    CHECK_FALSE(actions[0].rearm);
    CHECK(c.state().stage == 0);
    CHECK(c.state().percent == 5);
    CHECK(c.state().phase == RolloutPhase::Holding);
    CHECK(c.state().entered_at == clock.now());
    CHECK(c.state().held == 0ns);
    REQUIRE(c.state().history.size() == 1);
    CHECK(c.state().history[0].action == "start");
    CHECK(c.currentHold() == 10min);
}

TEST_CASE("rollout: a firing gate rule at 0 percent keeps it from starting", "[rollout]") {
    ManualClock clock;
    RolloutController c(config());
    CHECK(c.tick(clock.now(), gate(AlertState::Firing)).empty());
    CHECK(c.state().percent == 0);
    clock.advance(1min);
    CHECK(c.tick(clock.now(), gate(AlertState::Pending)).empty());
    clock.advance(1min);
    CHECK(c.tick(clock.now(), gate(AlertState::Resolved)).size() == 1);
    CHECK(c.state().percent == 5);
}

TEST_CASE("rollout: promotes after the hold with the gate quiet", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    CHECK(run(c, clock, 9min).empty());
    CHECK(c.state().held == 9min);
    clock.advance(1min);
    const auto actions = c.tick(clock.now(), gate());
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].action == "promote");
    CHECK(actions[0].from_percent == 5);
    CHECK(actions[0].to_percent == 25);
    CHECK(actions[0].reason == "hold 10m passed with the gate quiet");
    CHECK_FALSE(actions[0].rearm);
    CHECK(c.state().percent == 25);
    CHECK(c.state().stage == 1);
    CHECK(c.state().held == 0ns);
    CHECK(c.state().entered_at == clock.now());
    CHECK(c.state().promotions == 2);  // the start and this promotion
}

TEST_CASE("rollout: a pending gate rule blocks promotion and resets the held time", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    run(c, clock, 8min);
    CHECK(c.state().held == 8min);
    CHECK(run(c, clock, 5min, gate(AlertState::Pending)).empty());
    CHECK(c.state().held == 0ns);
    CHECK(c.state().percent == 5);
    // The whole hold again from the first quiet tick.
    CHECK(run(c, clock, 9min).empty());
    CHECK(run(c, clock, 1min).size() == 1);
    CHECK(c.state().percent == 25);
}

TEST_CASE("rollout: a warning rule in the gate blocks promotion too but does not roll back", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    CHECK(run(c, clock, 30min, gate(AlertState::Inactive, AlertState::Firing)).empty());
    CHECK(c.state().percent == 5);
    CHECK(c.state().phase == RolloutPhase::Holding);
    CHECK(c.state().held == 0ns);
    CHECK(c.state().rollbacks == 0);
}

TEST_CASE("rollout: a firing critical rule rolls back to zero", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    run(c, clock, 10min);
    run(c, clock, 10min);
    REQUIRE(c.state().percent == 50);
    clock.advance(1min);
    const auto actions = c.tick(clock.now(), gate(AlertState::Firing));
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].action == "rollback");
    CHECK(actions[0].rollback);
    CHECK(actions[0].from_percent == 50);
    CHECK(actions[0].to_percent == 0);
    CHECK(actions[0].reason == "rule errors fired");
    CHECK(c.state().stage == -1);
    CHECK(c.state().percent == 0);
    CHECK(c.state().phase == RolloutPhase::Cooldown);
    REQUIRE(c.state().cooldown_until);
    CHECK(*c.state().cooldown_until == clock.now() + 10min);
    CHECK(c.state().rollbacks == 1);
    CHECK(c.state().rollbacks_total == 1);
    CHECK(c.state().history.back().action == "rollback");
    CHECK(c.state().history.back().reason == "rule errors fired");
}

TEST_CASE("rollout: on_critical previous rolls back one stage", "[rollout]") {
    ManualClock clock;
    auto cfg = config();
    cfg.on_critical = RolloutConfig::OnCritical::Previous;
    auto c = started(clock, cfg);
    run(c, clock, 10min);
    REQUIRE(c.state().percent == 25);
    clock.advance(1min);
    const auto actions = c.tick(clock.now(), gate(AlertState::Firing));
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].from_percent == 25);
    CHECK(actions[0].to_percent == 5);
    CHECK(c.state().stage == 0);
    CHECK(c.state().percent == 5);
    CHECK(c.state().phase == RolloutPhase::Cooldown);
}

TEST_CASE("rollout: on_critical previous from the first stage goes to zero", "[rollout]") {
    ManualClock clock;
    auto cfg = config();
    cfg.on_critical = RolloutConfig::OnCritical::Previous;
    auto c = started(clock, cfg);
    clock.advance(1min);
    const auto actions = c.tick(clock.now(), gate(AlertState::Firing));
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].from_percent == 5);
    CHECK(actions[0].to_percent == 0);
    CHECK(c.state().stage == -1);
}

TEST_CASE("rollout: cooldown blocks promotion, then holds afresh and the first promotion re-arms", "[rollout]") {
    ManualClock clock;
    auto cfg = config();
    cfg.on_critical = RolloutConfig::OnCritical::Previous;
    auto c = started(clock, cfg);
    run(c, clock, 10min);
    REQUIRE(c.state().percent == 25);
    run(c, clock, 1min, gate(AlertState::Firing));
    REQUIRE(c.state().percent == 5);
    // The critical rule keeps firing a while in cooldown: no second rollback, no promotion.
    CHECK(run(c, clock, 3min, gate(AlertState::Firing)).empty());
    CHECK(run(c, clock, 6min).empty());
    CHECK(c.state().phase == RolloutPhase::Cooldown);
    CHECK(c.promote(clock.now(), "op").ok == false);
    // The cooldown ends at this tick: Holding, held from zero.
    CHECK(run(c, clock, 1min).empty());
    CHECK(c.state().phase == RolloutPhase::Holding);
    CHECK_FALSE(c.state().cooldown_until);
    CHECK(c.state().held == 0ns);
    CHECK(run(c, clock, 9min).empty());
    const auto actions = run(c, clock, 1min);
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].action == "promote");
    CHECK(actions[0].to_percent == 25);
    CHECK(actions[0].rearm);
    // Only the first promotion after the rollback re-arms.
    const auto next = run(c, clock, 10min);
    REQUIRE(next.size() == 1);
    CHECK(next[0].to_percent == 50);
    CHECK_FALSE(next[0].rearm);
}

TEST_CASE("rollout: after a rollback to zero the cooldown ends in a re-arming start", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    run(c, clock, 1min, gate(AlertState::Firing));
    REQUIRE(c.state().percent == 0);
    CHECK(run(c, clock, 9min).empty());
    const auto actions = run(c, clock, 1min);
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].action == "start");
    CHECK(actions[0].to_percent == 5);
    CHECK(actions[0].rearm);
}

TEST_CASE("rollout: a firing critical rule when the cooldown ends rolls back again", "[rollout]") {
    ManualClock clock;
    auto cfg = config();
    cfg.on_critical = RolloutConfig::OnCritical::Previous;
    auto c = started(clock, cfg);
    run(c, clock, 10min);
    run(c, clock, 1min, gate(AlertState::Firing));
    REQUIRE(c.state().percent == 5);
    CHECK(run(c, clock, 10min, gate(AlertState::Firing)).empty());
    CHECK(c.state().phase == RolloutPhase::Holding);
    const auto actions = run(c, clock, 1min, gate(AlertState::Firing));
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].from_percent == 5);
    CHECK(actions[0].to_percent == 0);
    CHECK(c.state().rollbacks == 2);
}

TEST_CASE("rollout: max_rollbacks fails the rollout and resume clears it", "[rollout]") {
    ManualClock clock;
    auto cfg = config();
    cfg.max_rollbacks = 2;
    auto c = started(clock, cfg);
    run(c, clock, 1min, gate(AlertState::Firing));
    CHECK(c.state().phase == RolloutPhase::Cooldown);
    run(c, clock, 10min);  // cooldown over, restarted at 5 %
    REQUIRE(c.state().percent == 5);
    const auto second = run(c, clock, 1min, gate(AlertState::Firing));
    REQUIRE(second.size() == 1);
    CHECK(c.state().phase == RolloutPhase::Failed);
    CHECK(c.state().rollbacks == 2);
    CHECK_FALSE(c.state().cooldown_until);
    CHECK(c.state().history.back().action == "fail");
    // Failed does nothing on ticks.
    CHECK(run(c, clock, 60min).empty());
    CHECK(c.state().percent == 0);
    CHECK_FALSE(c.promote(clock.now(), "op").ok);

    const auto r = c.resume(clock.now(), "fixed the bug");
    CHECK(r.ok);
    CHECK_FALSE(r.action);
    CHECK(c.state().phase == RolloutPhase::Holding);
    CHECK(c.state().rollbacks == 0);
    CHECK(c.state().rollbacks_total == 2);
    CHECK(c.state().history.back().action == "resume");
    CHECK(c.state().history.back().reason == "fixed the bug");
    const auto actions = run(c, clock, 1min);
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].to_percent == 5);
    CHECK(actions[0].rearm);
}

TEST_CASE("rollout: max_rollbacks 0 never fails", "[rollout]") {
    ManualClock clock;
    auto cfg = config();
    cfg.max_rollbacks = 0;
    cfg.cooldown = 0ns;
    auto c = started(clock, cfg);
    for (int i = 0; i < 5; ++i) {
        REQUIRE(run(c, clock, 1min, gate(AlertState::Firing)).size() == 1);
        REQUIRE(run(c, clock, 1min).size() == 1);  // cooldown 0: restarts on the next quiet tick
    }
    CHECK(c.state().phase == RolloutPhase::Holding);
    CHECK(c.state().rollbacks == 5);
}

TEST_CASE("rollout: a manual gate waits for promote", "[rollout]") {
    ManualClock clock;
    auto cfg = config();
    cfg.manual_gate = {25, 50, 100};
    auto c = started(clock, cfg);
    CHECK(run(c, clock, 10min).empty());
    CHECK(c.state().phase == RolloutPhase::AwaitingPromote);
    CHECK(c.state().percent == 5);
    CHECK(run(c, clock, 60min).empty());
    CHECK(c.state().phase == RolloutPhase::AwaitingPromote);

    const auto r = c.promote(clock.now(), "dashboards look fine");
    REQUIRE(r.ok);
    REQUIRE(r.action);
    CHECK(r.action->action == "promote");
    CHECK(r.action->from_percent == 5);
    CHECK(r.action->to_percent == 25);
    CHECK(r.action->reason == "dashboards look fine");
    CHECK(c.state().phase == RolloutPhase::Holding);
    CHECK(c.state().history.back().reason == "dashboards look fine");
}

TEST_CASE("rollout: promote is refused while a critical gate rule fires", "[rollout]") {
    ManualClock clock;
    auto cfg = config();
    cfg.manual_gate = {25};
    cfg.on_critical = RolloutConfig::OnCritical::Previous;
    auto c = started(clock, cfg);
    run(c, clock, 10min);
    REQUIRE(c.state().phase == RolloutPhase::AwaitingPromote);
    // A firing critical rule rolls back even while awaiting promote ...
    CHECK(run(c, clock, 1min, gate(AlertState::Firing)).size() == 1);
    CHECK(c.state().percent == 0);
    // ... and promote is refused while it fires (cooldown or not).
    auto r = c.promote(clock.now(), "op");
    CHECK_FALSE(r.ok);
    CHECK_FALSE(r.action);
    run(c, clock, 10min, gate(AlertState::Firing));
    REQUIRE(c.state().phase == RolloutPhase::Holding);
    r = c.promote(clock.now(), "op");
    CHECK_FALSE(r.ok);
    CHECK(r.message.find("errors") != std::string::npos);
    // A firing warning does not stop a manual promote.
    run(c, clock, 1min, gate(AlertState::Inactive, AlertState::Firing));
    r = c.promote(clock.now(), "op");
    CHECK(r.ok);
    CHECK(c.state().percent == 5);
}

TEST_CASE("rollout: promote skips the rest of the hold", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    run(c, clock, 2min);
    const auto r = c.promote(clock.now(), "hurry");
    REQUIRE(r.action);
    CHECK(r.action->to_percent == 25);
    CHECK(c.state().held == 0ns);
    CHECK(c.state().promotions == 2);
}

TEST_CASE("rollout: pause stops accrual and promotion but not rollback", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    run(c, clock, 4min);
    auto r = c.pause(clock.now(), "investigating");
    CHECK(r.ok);
    CHECK(c.state().paused);
    CHECK_FALSE(c.pause(clock.now(), "again").ok);
    CHECK(run(c, clock, 60min).empty());
    CHECK(c.state().held == 4min);
    CHECK(c.state().percent == 5);

    r = c.resume(clock.now(), "done");
    CHECK(r.ok);
    CHECK_FALSE(c.state().paused);
    CHECK(run(c, clock, 5min).empty());
    CHECK(c.state().held == 9min);
    CHECK(run(c, clock, 1min).size() == 1);
    CHECK(c.state().percent == 25);

    c.pause(clock.now(), "again");
    const auto actions = run(c, clock, 1min, gate(AlertState::Firing));
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].action == "rollback");
    CHECK(c.state().percent == 0);
    CHECK(c.state().paused);
}

TEST_CASE("rollout: resume with nothing to resume is refused", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    const auto r = c.resume(clock.now(), "x");
    CHECK_FALSE(r.ok);
    CHECK_FALSE(r.message.empty());
    CHECK(c.state().history.size() == 1);
}

TEST_CASE("rollout: abort goes to zero and resume starts again", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    run(c, clock, 10min);
    REQUIRE(c.state().percent == 25);
    auto r = c.abort(clock.now(), "bad release");
    REQUIRE(r.ok);
    REQUIRE(r.action);
    CHECK(r.action->action == "abort");
    CHECK(r.action->rollback);
    CHECK(r.action->from_percent == 25);
    CHECK(r.action->to_percent == 0);
    CHECK(c.state().phase == RolloutPhase::Aborted);
    CHECK(c.state().percent == 0);
    CHECK(c.state().stage == -1);
    CHECK(c.state().rollbacks_total == 0);
    CHECK_FALSE(c.abort(clock.now(), "again").ok);
    CHECK_FALSE(c.pause(clock.now(), "x").ok);
    CHECK_FALSE(c.promote(clock.now(), "x").ok);
    CHECK(run(c, clock, 60min).empty());

    r = c.resume(clock.now(), "fixed");
    CHECK(r.ok);
    const auto actions = run(c, clock, 1min);
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].action == "start");
    CHECK(actions[0].to_percent == 5);
}

TEST_CASE("rollout: the last stage held completes and ticks then do nothing", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    CHECK(run(c, clock, 30min).size() == 3);
    REQUIRE(c.state().percent == 100);
    CHECK(run(c, clock, 9min).empty());
    CHECK(c.state().phase == RolloutPhase::Holding);
    CHECK(run(c, clock, 1min).empty());
    CHECK(c.state().phase == RolloutPhase::Complete);
    CHECK(c.state().history.back().action == "complete");
    CHECK(run(c, clock, 10min, gate(AlertState::Firing)).empty());
    CHECK(c.state().percent == 100);
    CHECK(c.state().phase == RolloutPhase::Complete);
    CHECK_FALSE(c.pause(clock.now(), "x").ok);
    CHECK_FALSE(c.promote(clock.now(), "x").ok);
}

TEST_CASE("rollout: a last stage below 100 completes at its percentage", "[rollout]") {
    ManualClock clock;
    auto cfg = config();
    cfg.stages = {10, 50};
    cfg.hold = {1min, 2min};
    auto c = started(clock, cfg);
    CHECK(c.state().percent == 10);
    CHECK(run(c, clock, 1min).size() == 1);
    CHECK(run(c, clock, 2min).empty());
    CHECK(c.state().phase == RolloutPhase::Complete);
    CHECK(c.state().percent == 50);
}

TEST_CASE("rollout: save and restore mid-stage keep stage, phase, held time and history", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    run(c, clock, 10min);
    run(c, clock, 7min);
    c.pause(clock.now(), "look \"closer\"\n");
    const std::string saved = c.save();
    CHECK(saved.rfind("{\"version\":1,", 0) == 0);

    RolloutController d(config());
    std::string error;
    REQUIRE(d.restore(saved, error));
    CHECK(d.state().stage == 1);
    CHECK(d.state().percent == 25);
    CHECK(d.state().phase == RolloutPhase::Holding);
    CHECK(d.state().paused);
    CHECK(d.state().held == 7min);
    CHECK(d.state().entered_at == c.state().entered_at);
    CHECK(d.state().promotions == c.state().promotions);
    REQUIRE(d.state().history.size() == c.state().history.size());
    for (std::size_t i = 0; i < c.state().history.size(); ++i) {
        CHECK(d.state().history[i].at == c.state().history[i].at);
        CHECK(d.state().history[i].action == c.state().history[i].action);
        CHECK(d.state().history[i].from_percent == c.state().history[i].from_percent);
        CHECK(d.state().history[i].to_percent == c.state().history[i].to_percent);
        CHECK(d.state().history[i].reason == c.state().history[i].reason);
    }
    CHECK(d.save() == saved);
}

TEST_CASE("rollout: the first tick after restore adds no time", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    run(c, clock, 7min);
    const std::string saved = c.save();

    RolloutController d(config());
    std::string error;
    REQUIRE(d.restore(saved, error));
    clock.advance(5h);  // the agent was down
    CHECK(d.tick(clock.now(), gate()).empty());
    CHECK(d.state().held == 7min);
    CHECK(run(d, clock, 2min).empty());
    CHECK(d.state().held == 9min);
    CHECK(run(d, clock, 1min).size() == 1);
    CHECK(d.state().percent == 25);
}

TEST_CASE("rollout: restore keeps a cooldown and its re-arm", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    run(c, clock, 1min, gate(AlertState::Firing));
    RolloutController d(config());
    std::string error;
    REQUIRE(d.restore(c.save(), error));
    CHECK(d.state().phase == RolloutPhase::Cooldown);
    CHECK(d.state().cooldown_until == c.state().cooldown_until);
    CHECK(d.state().rearm_pending);
    CHECK(d.state().rollbacks == 1);
    const auto actions = run(d, clock, 10min);
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].rearm);
}

TEST_CASE("rollout: restore at a percentage no longer in stages starts fresh", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    run(c, clock, 10min);
    REQUIRE(c.state().percent == 25);
    auto cfg = config();
    cfg.stages = {10, 50, 100};
    RolloutController d(cfg);
    std::string error;
    CHECK_FALSE(d.restore(c.save(), error));
    CHECK(error.find("25") != std::string::npos);
    CHECK(d.state().stage == -1);
    CHECK(d.state().percent == 0);
    CHECK(d.state().history.empty());
    const auto actions = d.tick(clock.now(), gate());
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].action == "start");
    CHECK(actions[0].to_percent == 10);
}

TEST_CASE("rollout: restore finds the stage by percentage when stages change around it", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    run(c, clock, 10min);
    auto cfg = config();
    cfg.stages = {1, 5, 25, 100};
    RolloutController d(cfg);
    std::string error;
    REQUIRE(d.restore(c.save(), error));
    CHECK(d.state().stage == 2);
    CHECK(d.state().percent == 25);
}

TEST_CASE("rollout: a corrupt saved state is refused", "[rollout]") {
    RolloutController c(config());
    std::string error;
    for (const std::string& bad : {std::string(""), std::string("not json"), std::string("{\"version\":1,"),
                                  std::string("[]"), std::string("{\"version\":1,\"percent\":5}"),
                                  std::string("{\"version\":1,\"percent\":5,\"phase\":\"dancing\"}"),
                                  std::string("{\"version\":1,\"percent\":\"5\",\"phase\":\"holding\"}"),
                                  std::string("{\"version\":1,\"percent\":5,\"phase\":\"holding\",\"held_ns\":-1}"),
                                  std::string("{\"version\":2,\"percent\":5,\"phase\":\"holding\"}"),
                                  std::string("{\"version\":1,\"percent\":5,\"phase\":\"holding\"} trailing")}) {
        INFO(bad);
        error.clear();
        CHECK_FALSE(c.restore(bad, error));
        CHECK_FALSE(error.empty());
        CHECK(c.state().percent == 0);
        CHECK(c.state().stage == -1);
    }
    REQUIRE(c.restore("{\"version\":1,\"percent\":5,\"phase\":\"holding\"}", error));
    CHECK(c.state().stage == 0);
}

TEST_CASE("rollout: the history keeps the newest 100 entries", "[rollout]") {
    ManualClock clock;
    auto c = started(clock);
    for (int i = 0; i < 120; ++i) {
        clock.advance(1s);
        REQUIRE(c.pause(clock.now(), "p" + std::to_string(i)).ok);
        REQUIRE(c.resume(clock.now(), "r" + std::to_string(i)).ok);
    }
    REQUIRE(c.state().history.size() == 100);
    CHECK(c.state().history.front().reason == "p70");
    CHECK(c.state().history.back().reason == "r119");
    RolloutController d(config());
    std::string error;
    REQUIRE(d.restore(c.save(), error));
    CHECK(d.state().history.size() == 100);
}

TEST_CASE("rollout: phase names", "[rollout]") {
    using rollguard::agent::toString;
    CHECK(std::string(toString(RolloutPhase::Holding)) == "holding");
    CHECK(std::string(toString(RolloutPhase::AwaitingPromote)) == "awaiting_promote");
    CHECK(std::string(toString(RolloutPhase::Cooldown)) == "cooldown");
    CHECK(std::string(toString(RolloutPhase::Complete)) == "complete");
    CHECK(std::string(toString(RolloutPhase::Failed)) == "failed");
    CHECK(std::string(toString(RolloutPhase::Aborted)) == "aborted");
}

TEST_CASE("rollout: restore awaiting a manual gate that the config dropped holds and promotes", "[rollout]") {
    ManualClock clock;
    auto cfg = config();
    cfg.manual_gate = {25};
    auto c = started(clock, cfg);
    run(c, clock, 10min);
    REQUIRE(c.state().phase == RolloutPhase::AwaitingPromote);

    RolloutController kept(cfg);
    std::string error;
    REQUIRE(kept.restore(c.save(), error));
    CHECK(kept.state().phase == RolloutPhase::AwaitingPromote);
    CHECK(run(kept, clock, 5min).empty());

    RolloutController d(config());
    REQUIRE(d.restore(c.save(), error));
    CHECK(d.state().phase == RolloutPhase::Holding);
    CHECK(d.state().held == 10min);
    const auto actions = run(d, clock, 1min);
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].to_percent == 25);
}
