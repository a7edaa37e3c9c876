#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "rollguard/rules/engine.h"

using namespace std::chrono_literals;
using rollguard::rules::AlertState;
using rollguard::rules::BaselineKind;
using rollguard::rules::Engine;
using rollguard::rules::EvalInput;
using rollguard::rules::MetricKind;
using rollguard::rules::RuleSpec;
using rollguard::rules::SeriesStats;
using rollguard::rules::Severity;
using rollguard::rules::ThresholdKind;
using rollguard::rules::TimePoint;
using rollguard::rules::Transition;

namespace {

const TimePoint kT0{std::chrono::seconds{1'700'000'000}};

RuleSpec rule(std::string name, std::chrono::nanoseconds for_duration) {
    RuleSpec r;
    r.name = std::move(name);
    r.severity = Severity::Critical;
    r.source = "app";
    r.metric.kind = MetricKind::ErrorRatio;
    r.threshold = 0.05;
    r.for_ = for_duration;
    r.hooks = {"rollback"};
    return r;
}

std::vector<Transition> tick(Engine& e, TimePoint now, std::int64_t errors) {
    return e.evaluate(now, [errors](const RuleSpec&) { return SeriesStats{1000, errors, 5min, nullptr}; });
}

}  // namespace

TEST_CASE("restore: a pending rule keeps its original since across a restart", "[rules][state]") {
    Engine before({rule("err", 10min)});
    tick(before, kT0, 100);
    REQUIRE(before.status(0).state == AlertState::Pending);
    const std::string saved = before.saveState();
    CHECK(saved.substr(0, 4) == "RGRS");
    CHECK(saved[4] == '\x01');

    Engine after({rule("err", 10min)});
    REQUIRE(after.restoreState(saved, kT0 + 6min));
    CHECK(after.status(0).state == AlertState::Pending);
    CHECK(after.status(0).since == kT0);
    CHECK(tick(after, kT0 + 10min - 1ns, 100).empty());
    const auto ts = tick(after, kT0 + 10min, 100);
    REQUIRE(ts.size() == 1);
    CHECK(ts[0].to == AlertState::Firing);
    CHECK(ts[0].since == kT0);
    CHECK(ts[0].hooks_to_run == std::vector<std::string>{"rollback"});
}

TEST_CASE("restore: a latched critical stays latched, no second rollback", "[rules][state]") {
    Engine before({rule("err", 0s)});
    REQUIRE(tick(before, kT0, 100)[0].hooks_to_run.size() == 1);
    const std::string saved = before.saveState();

    Engine after({rule("err", 0s)});
    REQUIRE(after.restoreState(saved, kT0 + 1min));
    CHECK(after.status(0).state == AlertState::Firing);
    CHECK(after.status(0).latched);
    CHECK(after.status(0).firing_since == kT0);
    CHECK(tick(after, kT0 + 2min, 100).empty());
    CHECK(tick(after, kT0 + 3min, 0)[0].to == AlertState::Resolved);
    const auto again = tick(after, kT0 + 4min, 100);
    REQUIRE(again.size() == 1);
    CHECK(again[0].to == AlertState::Firing);
    CHECK(again[0].hooks_to_run.empty());
}

TEST_CASE("restore: changed or removed rules start fresh - corrupt input changes nothing", "[rules][state]") {
    Engine before({rule("a", 10min), rule("b", 10min)});
    tick(before, kT0, 100);
    const std::string saved = before.saveState();

    RuleSpec changed = rule("a", 10min);
    changed.threshold = 0.06;
    Engine after({changed, rule("b", 10min), rule("c", 10min)});
    REQUIRE(after.restoreState(saved, kT0 + 1min));
    CHECK(after.status(0).state == AlertState::Inactive);
    CHECK(after.status(1).state == AlertState::Pending);
    CHECK(after.status(2).state == AlertState::Inactive);
    // Hooks and description are not part of the definition.
    RuleSpec rehooked = rule("b", 10min);
    rehooked.hooks = {"other"};
    rehooked.description = "new words";
    CHECK(rehooked.specHash() == rule("b", 10min).specHash());
    CHECK(changed.specHash() != rule("a", 10min).specHash());

    Engine fresh({rule("a", 10min)});
    std::string corrupt = saved;
    corrupt[corrupt.size() / 2] = static_cast<char>(corrupt[corrupt.size() / 2] ^ 0x5A);
    CHECK_FALSE(fresh.restoreState(corrupt, kT0));
    CHECK_FALSE(fresh.restoreState(saved.substr(0, saved.size() - 1), kT0));
    CHECK_FALSE(fresh.restoreState("", kT0));
    std::string other_version = saved;
    other_version[4] = '\x02';
    CHECK_FALSE(fresh.restoreState(other_version, kT0));
    CHECK(fresh.status(0).state == AlertState::Inactive);
    CHECK_FALSE(fresh.status(0).last_evaluation.has_value());
}

TEST_CASE("restore: a learned baseline stays frozen and times in the future are clamped", "[rules][state]") {
    RuleSpec r = rule("learned", 0s);
    r.threshold = 2.0;
    r.threshold_kind = ThresholdKind::Factor;
    r.baseline.kind = BaselineKind::Learned;
    r.baseline.learn = 1min;
    Engine before({r});
    tick(before, kT0, 10);
    tick(before, kT0 + 1min, 15);
    REQUIRE(before.status(0).baseline == 0.01);
    const std::string saved = before.saveState();

    Engine after({r});
    REQUIRE(after.restoreState(saved, kT0 + 2min));
    CHECK(after.status(0).baseline == 0.01);
    CHECK_FALSE(after.status(0).learning);
    const auto ts = tick(after, kT0 + 3min, 21);
    REQUIRE(ts.size() == 1);
    CHECK(ts[0].threshold == Approx(0.02));

    Engine early({rule("err", 10min)});
    Engine pending({rule("err", 10min)});
    tick(pending, kT0 + 1h, 100);
    REQUIRE(early.restoreState(pending.saveState(), kT0));
    CHECK(early.status(0).since == kT0);
}

TEST_CASE("restore: downtime counts toward `for` even when the first evaluation holds", "[rules][state]") {
    RuleSpec r = rule("err", 10min);
    r.no_data = rollguard::rules::GapPolicy::Hold;
    r.min_samples = 100;
    Engine before({r});
    tick(before, kT0, 100);
    Engine after({r});
    REQUIRE(after.restoreState(before.saveState(), kT0 + 6min));
    CHECK(after.status(0).last_evaluation == kT0);
    // No data right after the restart: held, and `since` is not moved by the downtime.
    after.evaluate(kT0 + 6min, [](const RuleSpec&) { return SeriesStats{10, 10, 5min, nullptr}; });
    CHECK(after.status(0).state == AlertState::Pending);
    CHECK(after.status(0).since == kT0);
    const auto ts = tick(after, kT0 + 10min, 100);
    REQUIRE(ts.size() == 1);
    CHECK(ts[0].to == AlertState::Firing);
}
