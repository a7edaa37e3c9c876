#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "rollguard/rules/clock.h"
#include "rollguard/rules/engine.h"
#include "rollguard/rules/stats.h"

using namespace std::chrono_literals;
using rollguard::rules::AlertState;
using rollguard::rules::Comparison;
using rollguard::rules::computeMetric;
using rollguard::rules::Engine;
using rollguard::rules::LatencyView;
using rollguard::rules::ManualClock;
using rollguard::rules::MetricKind;
using rollguard::rules::MetricSpec;
using rollguard::rules::RuleSpec;
using rollguard::rules::RuleStateMachine;
using rollguard::rules::SeriesStats;
using rollguard::rules::Severity;
using rollguard::rules::TimePoint;
using rollguard::rules::Transition;

namespace {

/// A latency distribution with fixed answers; records the last quantile asked for.
class FakeLatency final : public LatencyView {
public:
    std::int64_t n = 0;
    double quantile_answer = 0.0;
    double mean = 0.0;
    double min = 0.0;
    double max = 0.0;
    mutable double last_q = -1.0;

    std::int64_t count() const override { return n; }
    double quantileSeconds(double q) const override {
        last_q = q;
        return quantile_answer;
    }
    double meanSeconds() const override { return mean; }
    double minSeconds() const override { return min; }
    double maxSeconds() const override { return max; }
};

RuleSpec errorRatioRule(std::string name, Severity severity, std::chrono::nanoseconds for_duration) {
    RuleSpec r;
    r.name = std::move(name);
    r.severity = severity;
    r.source = "app";
    r.metric.kind = MetricKind::ErrorRatio;
    r.metric.text = "error_ratio";
    r.comparison = Comparison::Above;
    r.threshold = 0.05;
    r.for_ = for_duration;
    r.hooks = {"rollback", "page"};
    return r;
}

/// Drives an Engine with a mutable SeriesStats and a ManualClock.
struct Harness {
    explicit Harness(std::vector<RuleSpec> rules) : engine(std::move(rules)) {}

    std::vector<Transition> tick(std::int64_t events, std::int64_t errors) {
        stats.events = events;
        stats.errors = errors;
        return engine.evaluate(clock.now(), [this](const RuleSpec&) { return stats; });
    }
    std::vector<Transition> healthy() { return tick(1000, 0); }
    std::vector<Transition> breached() { return tick(1000, 100); }

    Engine engine;
    ManualClock clock;
    SeriesStats stats{0, 0, 5min, nullptr};
};

const std::vector<std::string> kNoHooks;
const std::vector<std::string> kBothHooks{"rollback", "page"};

}  // namespace

TEST_CASE("computeMetric: counts, rates and ratios", "[rules][engine]") {
    MetricSpec m;
    SeriesStats s{300, 15, 60s, nullptr};

    m.kind = MetricKind::Count;
    auto v = computeMetric(m, s);
    CHECK(v.value == 300.0);
    CHECK(v.samples == 300);

    m.kind = MetricKind::Rate;
    v = computeMetric(m, s);
    CHECK(v.value == 5.0);
    CHECK(v.samples == 300);

    m.kind = MetricKind::ErrorRatio;
    v = computeMetric(m, s);
    CHECK(v.value == 0.05);
    CHECK(v.samples == 300);

    SeriesStats empty{0, 0, 60s, nullptr};
    v = computeMetric(m, empty);
    CHECK_FALSE(v.value.has_value());
    CHECK(v.samples == 0);

    m.kind = MetricKind::Count;
    CHECK(computeMetric(m, empty).value == 0.0);
}

TEST_CASE("computeMetric: latency metrics read the view in seconds", "[rules][engine]") {
    FakeLatency lat;
    lat.n = 42;
    lat.quantile_answer = 0.25;
    lat.mean = 0.1;
    lat.min = 0.001;
    lat.max = 2.0;
    SeriesStats s{100, 0, 60s, &lat};

    MetricSpec m;
    m.kind = MetricKind::Quantile;
    m.quantile = 0.999;
    auto v = computeMetric(m, s);
    CHECK(v.value == 0.25);
    CHECK(v.samples == 42);
    CHECK(lat.last_q == 0.999);

    m.kind = MetricKind::Mean;
    CHECK(computeMetric(m, s).value == 0.1);
    m.kind = MetricKind::Min;
    CHECK(computeMetric(m, s).value == 0.001);
    m.kind = MetricKind::Max;
    CHECK(computeMetric(m, s).value == 2.0);

    lat.n = 0;
    v = computeMetric(m, s);
    CHECK_FALSE(v.value.has_value());
    CHECK(v.samples == 0);

    SeriesStats no_latency{100, 0, 60s, nullptr};
    v = computeMetric(m, no_latency);
    CHECK_FALSE(v.value.has_value());
    CHECK(v.samples == 0);
}

TEST_CASE("state machine: a breach shorter than `for` never fires", "[rules][engine]") {
    Harness h({errorRatioRule("errors", Severity::Critical, 5min)});
    const TimePoint start = h.clock.now();

    auto t = h.breached();
    REQUIRE(t.size() == 1);
    CHECK(t[0].from == AlertState::Inactive);
    CHECK(t[0].to == AlertState::Pending);
    CHECK(t[0].since == start);
    CHECK(t[0].hooks_to_run.empty());

    for (int i = 0; i < 299; ++i) {  // up to 4m59s of breach
        h.clock.advance(1s);
        CHECK(h.breached().empty());
    }
    CHECK(h.engine.status(0).state == AlertState::Pending);

    h.clock.advance(1s);  // recovers exactly at the boundary instead of breaching
    t = h.healthy();
    REQUIRE(t.size() == 1);
    CHECK(t[0].from == AlertState::Pending);
    CHECK(t[0].to == AlertState::Inactive);
    CHECK(t[0].since == start);
    CHECK(h.engine.status(0).state == AlertState::Inactive);
    CHECK_FALSE(h.engine.status(0).since.has_value());
}

TEST_CASE("state machine: a recovery resets pending and a later breach starts afresh", "[rules][engine]") {
    Harness h({errorRatioRule("errors", Severity::Critical, 60s)});
    h.breached();
    h.clock.advance(50s);
    CHECK(h.breached().empty());
    h.clock.advance(1s);
    REQUIRE(h.healthy().size() == 1);

    h.clock.advance(1s);
    const TimePoint second_start = h.clock.now();
    auto t = h.breached();
    REQUIRE(t.size() == 1);
    CHECK(t[0].to == AlertState::Pending);
    CHECK(t[0].since == second_start);
    CHECK(h.engine.status(0).since == second_start);

    // 60s after the first breach began, but only 50s into the second: still pending.
    h.clock.advance(50s);
    CHECK(h.breached().empty());
    h.clock.advance(9s);
    CHECK(h.breached().empty());
    h.clock.advance(1s);  // exactly `for` after second_start
    t = h.breached();
    REQUIRE(t.size() == 1);
    CHECK(t[0].from == AlertState::Pending);
    CHECK(t[0].to == AlertState::Firing);
    CHECK(t[0].since == second_start);
    CHECK(t[0].at == second_start + 60s);
}

TEST_CASE("state machine: fires exactly when now - since reaches `for`", "[rules][engine]") {
    RuleStateMachine m(std::chrono::nanoseconds{10s});
    const TimePoint t0{std::chrono::seconds{1'000}};
    auto step = m.observe(t0, true);
    CHECK(step.from == AlertState::Inactive);
    CHECK(step.to == AlertState::Pending);
    CHECK(m.since() == t0);
    CHECK_FALSE(m.firingSince().has_value());

    step = m.observe(t0 + 10s - 1ns, true);
    CHECK_FALSE(step.changed());
    CHECK(m.state() == AlertState::Pending);

    step = m.observe(t0 + 10s, true);
    CHECK(step.from == AlertState::Pending);
    CHECK(step.to == AlertState::Firing);
    CHECK(m.since() == t0);
    CHECK(m.firingSince() == t0 + 10s);

    step = m.observe(t0 + 20s, true);
    CHECK_FALSE(step.changed());

    step = m.observe(t0 + 21s, false);
    CHECK(step.from == AlertState::Firing);
    CHECK(step.to == AlertState::Resolved);
    CHECK(m.state() == AlertState::Inactive);
    CHECK_FALSE(m.since().has_value());
    CHECK_FALSE(m.firingSince().has_value());

    CHECK_FALSE(m.observe(t0 + 22s, false).changed());
}

TEST_CASE("state machine: for = 0 goes from inactive straight to firing", "[rules][engine]") {
    Harness h({errorRatioRule("errors", Severity::Critical, 0s)});
    h.healthy();
    h.clock.advance(1s);
    const TimePoint now = h.clock.now();
    auto t = h.breached();
    REQUIRE(t.size() == 1);
    CHECK(t[0].from == AlertState::Inactive);
    CHECK(t[0].to == AlertState::Firing);
    CHECK(t[0].since == now);
    CHECK(t[0].at == now);
    CHECK(t[0].hooks_to_run == kBothHooks);
    CHECK(t[0].metric.value == 0.1);
    CHECK(t[0].metric.samples == 1000);
    CHECK(t[0].rule_index == 0);
    REQUIRE(t[0].rule != nullptr);
    CHECK(t[0].rule->name == "errors");
}

TEST_CASE("min_samples not met is no data, whatever the value", "[rules][engine]") {
    auto rule = errorRatioRule("errors", Severity::Critical, 0s);
    rule.min_samples = 200;
    Harness h({rule});

    CHECK(h.tick(199, 199).empty());  // 100% errors, but only 199 events
    CHECK(h.engine.status(0).state == AlertState::Inactive);
    CHECK(h.engine.status(0).last.value == 1.0);
    CHECK(h.engine.status(0).last.samples == 199);

    auto t = h.tick(200, 11);
    REQUIRE(t.size() == 1);
    CHECK(t[0].to == AlertState::Firing);

    // No data while firing resolves it.
    h.clock.advance(1s);
    t = h.tick(10, 10);
    REQUIRE(t.size() == 1);
    CHECK(t[0].to == AlertState::Resolved);
}

TEST_CASE("a critical rule runs its hooks once per incident until re-armed", "[rules][engine]") {
    Harness h({errorRatioRule("errors", Severity::Critical, 10s)});
    const TimePoint start = h.clock.now();
    h.breached();
    h.clock.advance(10s);
    auto t = h.breached();
    REQUIRE(t.size() == 1);
    CHECK(t[0].to == AlertState::Firing);
    CHECK(t[0].hooks_to_run == kBothHooks);
    CHECK(h.engine.status(0).latched);
    CHECK(h.engine.status(0).state == AlertState::Firing);
    CHECK(h.engine.status(0).since == start);

    h.clock.advance(1s);
    CHECK(h.breached().empty());  // still firing: nothing new

    h.clock.advance(1s);
    t = h.healthy();
    REQUIRE(t.size() == 1);
    CHECK(t[0].from == AlertState::Firing);
    CHECK(t[0].to == AlertState::Resolved);
    CHECK(t[0].since == start);
    CHECK(t[0].at == start + 12s);
    CHECK(t[0].hooks_to_run.empty());
    CHECK(h.engine.status(0).state == AlertState::Inactive);
    CHECK(h.engine.status(0).latched);

    // Second incident: fires, but the rollback has already run.
    h.clock.advance(1s);
    h.breached();
    h.clock.advance(10s);
    t = h.breached();
    REQUIRE(t.size() == 1);
    CHECK(t[0].to == AlertState::Firing);
    CHECK(t[0].hooks_to_run == kNoHooks);

    h.clock.advance(1s);
    REQUIRE(h.healthy().size() == 1);
    h.engine.rearm();
    CHECK_FALSE(h.engine.status(0).latched);

    h.clock.advance(1s);
    h.breached();
    h.clock.advance(10s);
    t = h.breached();
    REQUIRE(t.size() == 1);
    CHECK(t[0].to == AlertState::Firing);
    CHECK(t[0].hooks_to_run == kBothHooks);
    CHECK(h.engine.status(0).latched);
}

TEST_CASE("a warning rule runs its hooks every time it fires", "[rules][engine]") {
    Harness h({errorRatioRule("errors-warn", Severity::Warning, 0s)});
    for (int incident = 0; incident < 3; ++incident) {
        auto t = h.breached();
        REQUIRE(t.size() == 1);
        CHECK(t[0].to == AlertState::Firing);
        CHECK(t[0].hooks_to_run == kBothHooks);
        CHECK_FALSE(h.engine.status(0).latched);
        h.clock.advance(1s);
        t = h.healthy();
        REQUIRE(t.size() == 1);
        CHECK(t[0].to == AlertState::Resolved);
        h.clock.advance(1s);
    }
}

TEST_CASE("below thresholds compare strictly below", "[rules][engine]") {
    RuleSpec r;
    r.name = "traffic";
    r.metric.kind = MetricKind::Rate;
    r.comparison = Comparison::Below;
    r.threshold = 10.0;  // events per second
    r.hooks = {"page"};
    Harness h({r});
    h.stats.window = 60s;

    CHECK(h.tick(600, 0).empty());  // exactly 10/s: not below
    CHECK(h.engine.status(0).last.value == 10.0);
    auto t = h.tick(599, 0);
    REQUIRE(t.size() == 1);
    CHECK(t[0].to == AlertState::Firing);
    CHECK(t[0].hooks_to_run == std::vector<std::string>{"page"});
    t = h.tick(6000, 0);
    REQUIRE(t.size() == 1);
    CHECK(t[0].to == AlertState::Resolved);
}

TEST_CASE("a quantile rule reads its quantile from the latency view", "[rules][engine]") {
    RuleSpec r;
    r.name = "p99";
    r.metric.kind = MetricKind::Quantile;
    r.metric.quantile = 0.99;
    r.metric.text = "p99";
    r.threshold = 0.5;  // seconds
    r.for_ = 2s;
    r.min_samples = 10;
    r.hooks = {"rollback"};
    Engine engine({r});
    FakeLatency lat;
    lat.n = 100;
    lat.quantile_answer = 0.75;
    ManualClock clock;
    const auto lookup = [&lat](const RuleSpec& rule) {
        CHECK(rule.name == "p99");
        return SeriesStats{100, 0, 5min, &lat};
    };

    auto t = engine.evaluate(clock.now(), lookup);
    REQUIRE(t.size() == 1);
    CHECK(t[0].to == AlertState::Pending);
    CHECK(lat.last_q == 0.99);
    CHECK(t[0].metric.value == 0.75);
    CHECK(t[0].metric.samples == 100);

    clock.advance(2s);
    t = engine.evaluate(clock.now(), lookup);
    REQUIRE(t.size() == 1);
    CHECK(t[0].to == AlertState::Firing);
    CHECK(t[0].hooks_to_run == std::vector<std::string>{"rollback"});

    lat.quantile_answer = 0.5;  // equal is not above
    clock.advance(1s);
    t = engine.evaluate(clock.now(), lookup);
    REQUIRE(t.size() == 1);
    CHECK(t[0].to == AlertState::Resolved);
    CHECK(engine.status(0).last_evaluation == clock.now());
}

TEST_CASE("the engine evaluates every rule independently, in order", "[rules][engine]") {
    auto critical = errorRatioRule("critical", Severity::Critical, 0s);
    auto slow = errorRatioRule("slow", Severity::Warning, 30s);
    slow.threshold = 0.01;
    Harness h({critical, slow});
    auto t = h.tick(1000, 20);  // 2%: only `slow` is breached
    REQUIRE(t.size() == 1);
    CHECK(t[0].rule_index == 1);
    CHECK(t[0].to == AlertState::Pending);

    t = h.tick(1000, 100);  // both breached
    REQUIRE(t.size() == 1);
    CHECK(t[0].rule_index == 0);
    CHECK(t[0].to == AlertState::Firing);
    CHECK(h.engine.status(1).state == AlertState::Pending);
    CHECK(h.engine.rules().size() == 2);
    CHECK(std::string(rollguard::rules::toString(AlertState::Resolved)) == "resolved");
}
