#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "rollguard/rules/clock.h"
#include "rollguard/rules/engine.h"
#include "rules_fakes.h"

using namespace std::chrono_literals;
using rollguard::rules::AlertState;
using rollguard::rules::BaselineKind;
using rollguard::rules::CompareKind;
using rollguard::rules::Engine;
using rollguard::rules::EvalInput;
using rollguard::rules::GapPolicy;
using rollguard::rules::ManualClock;
using rollguard::rules::MannWhitneyResult;
using rollguard::rules::mannWhitney;
using rollguard::rules::MetricKind;
using rollguard::rules::Notification;
using rollguard::rules::NotificationKind;
using rollguard::rules::RuleSpec;
using rollguard::rules::SeriesStats;
using rollguard::rules::Severity;
using rollguard::rules::ThresholdKind;
using rollguard::rules::TimePoint;
using rollguard::rules::Transition;
using rollguard::testing::BucketLatency;

namespace {

using Strings = std::vector<std::string>;

/// error_ratio > 5%, critical, hooks rollback + page.
RuleSpec rule(std::string name, Severity severity = Severity::Critical) {
    RuleSpec r;
    r.name = std::move(name);
    r.severity = severity;
    r.source = "app";
    r.metric.kind = MetricKind::ErrorRatio;
    r.metric.text = "error_ratio";
    r.threshold = 0.05;
    r.hooks = {"rollback", "page"};
    return r;
}

SeriesStats healthyStats() {
    return SeriesStats{1000, 0, 5min, nullptr};
}
SeriesStats breachStats() {
    return SeriesStats{1000, 100, 5min, nullptr};
}

EvalInput input(SeriesStats s, std::string group = "") {
    EvalInput in;
    in.group = std::move(group);
    in.stats = s;
    return in;
}

EvalInput errorInput() {
    EvalInput in;
    in.fetch_error = true;
    return in;
}

/// Drives an Engine where each rule gets the inputs set in `inputs[rule name]`.
struct Harness {
    explicit Harness(std::vector<RuleSpec> rules) : engine(rules) {
        for (const auto& r : rules) {
            set(r.name, {});
        }
    }

    /// One evaluation at the clock's time; `on_tick` false: one between two ticks.
    Engine::Evaluation tick(bool on_tick = true) {
        return engine.evaluateGroups(
            clock.now(),
            [this](const RuleSpec& r, std::size_t) {
                for (const auto& [name, in] : inputs) {
                    if (name == r.name) {
                        return in;
                    }
                }
                return std::vector<EvalInput>{};
            },
            on_tick);
    }
    /// Sets every rule's single input and ticks.
    Engine::Evaluation tickAll(const EvalInput& in, bool on_tick = true) {
        for (auto& [name, v] : inputs) {
            v = {in};
        }
        return tick(on_tick);
    }
    AlertState stateAfter(const EvalInput& in) {
        tickAll(in);
        return engine.status(0).state;
    }
    void set(const std::string& name, std::vector<EvalInput> in) {
        for (auto& [n, v] : inputs) {
            if (n == name) {
                v = std::move(in);
                return;
            }
        }
        inputs.emplace_back(name, std::move(in));
    }

    Engine engine;
    ManualClock clock;
    std::vector<std::pair<std::string, std::vector<EvalInput>>> inputs;
};

/// "from->to" of each transition, with its group when not empty.
Strings moves(const std::vector<Transition>& ts) {
    Strings out;
    for (const auto& t : ts) {
        out.push_back((t.group.empty() ? std::string() : t.group + ":") + toString(t.from) + "->" + toString(t.to));
    }
    return out;
}

Strings kinds(const std::vector<Notification>& ns) {
    Strings out;
    for (const auto& n : ns) {
        out.push_back(n.rule->name + ":" + toString(n.kind) + (n.inhibited ? ":inhibited" : "") +
                      (n.dry_run ? ":dry_run" : ""));
    }
    return out;
}

}  // namespace

TEST_CASE("for: fires exactly when the breach has lasted `for`, per group", "[rules][timing]") {
    RuleSpec r = rule("err");
    r.for_ = 2min;
    r.selection.group_by = {"route"};
    Harness h({r});
    h.set("err", {input(breachStats(), "route=/a"), input(healthyStats(), "route=/b")});
    CHECK(moves(h.tick().transitions) == Strings{"route=/a:inactive->pending"});
    h.clock.advance(2min - 1ns);
    CHECK(h.tick().transitions.empty());
    h.clock.advance(1ns);
    const auto e = h.tick();
    CHECK(moves(e.transitions) == Strings{"route=/a:pending->firing"});
    REQUIRE(e.notifications.size() == 1);
    CHECK(e.notifications[0].hooks == Strings{"rollback", "page"});
    CHECK(e.notifications[0].group == "route=/a");

    const auto groups = h.engine.groupStatuses(0);
    REQUIRE(groups.size() == 2);
    CHECK(groups[0].group == "route=/a");
    CHECK(groups[0].state == AlertState::Firing);
    CHECK(groups[0].threshold == 0.05);
    CHECK(groups[0].last.samples == 1000);
    CHECK(groups[1].state == AlertState::Inactive);
    CHECK(h.engine.status(0).state == AlertState::Firing);
    CHECK(h.engine.status(0).group == "route=/a");
    CHECK(h.engine.status(0).firing_since == h.clock.now());
}

TEST_CASE("group cap: inputs beyond max_groups + __other__ are dropped and counted", "[rules][timing]") {
    RuleSpec r = rule("err");
    r.selection.group_by = {"route"};
    r.selection.max_groups = 2;
    Harness h({r});
    h.set("err", {input(breachStats(), "route=/a"), input(breachStats(), "route=/b"),
                  input(breachStats(), "__other__"), input(breachStats(), "route=/c")});
    CHECK(moves(h.tick().transitions) ==
          Strings{"__other__:inactive->firing", "route=/a:inactive->firing", "route=/b:inactive->firing"});
    CHECK(h.engine.droppedInputs(0) == 1);
    CHECK(h.engine.groupStatuses(0).size() == 3);
    // A known group that is absent is evaluated as no data (no_data = ok resolves it).
    h.clock.advance(1s);
    h.set("err", {input(breachStats(), "route=/a"), input(breachStats(), "route=/b")});
    CHECK(moves(h.tick().transitions) == Strings{"__other__:firing->resolved"});
}

TEST_CASE("breaches = 3 of 5 fires on the third breach among the last five", "[rules][timing]") {
    RuleSpec r = rule("err");
    r.breaches_m = 3;
    r.breaches_n = 5;
    Harness h({r});
    CHECK(h.stateAfter(input(breachStats())) == AlertState::Pending);
    h.clock.advance(10s);
    CHECK(h.stateAfter(input(healthyStats())) == AlertState::Pending);
    h.clock.advance(10s);
    CHECK(h.stateAfter(input(breachStats())) == AlertState::Pending);
    h.clock.advance(10s);
    CHECK(h.stateAfter(input(healthyStats())) == AlertState::Pending);
    h.clock.advance(10s);
    const auto e = h.tickAll(input(breachStats()));
    CHECK(moves(e.transitions) == Strings{"pending->firing"});
    CHECK(h.engine.status(0).since == TimePoint{std::chrono::seconds{1'700'000'000}});

    // Healthy resolves (keep_firing_for = 0) and clears the history.
    h.clock.advance(10s);
    CHECK(moves(h.tickAll(input(healthyStats())).transitions) == Strings{"firing->resolved"});
    h.clock.advance(10s);
    CHECK(h.stateAfter(input(breachStats())) == AlertState::Pending);
    // A pending rule falls back only when none of the last five breached.
    for (int i = 0; i < 4; ++i) {
        h.clock.advance(10s);
        CHECK(h.stateAfter(input(healthyStats())) == AlertState::Pending);
    }
    h.clock.advance(10s);
    CHECK(moves(h.tickAll(input(healthyStats())).transitions) == Strings{"pending->inactive"});
}

TEST_CASE("between ticks: `for` fires at its evaluation, M-of-N and learning count ticks only", "[rules][timing]") {
    RuleSpec with_for = rule("for");
    with_for.for_ = 1500ms;
    RuleSpec m_of_n = rule("mofn");
    m_of_n.breaches_m = 3;
    m_of_n.breaches_n = 5;
    Harness h({with_for, m_of_n});
    // A tick breaches: both go pending (M-of-N: one breach among its last five).
    CHECK(moves(h.tickAll(input(breachStats())).transitions) == Strings{"inactive->pending", "inactive->pending"});
    // Evaluations 100 ms apart, every tenth a tick, all breaching: `for` fires at the
    // evaluation 1.5 s after the first breach, between ticks; M-of-N counts only the
    // ticks, so its third breach is the tick at 2 s.
    for (int i = 1; i <= 20; ++i) {
        h.clock.advance(100ms);
        const auto e = h.tickAll(input(breachStats()), i % 10 == 0);
        INFO("evaluation " << i);
        if (i == 15) {
            CHECK(moves(e.transitions) == Strings{"pending->firing"});
            CHECK(h.engine.status(0).state == AlertState::Firing);
        } else if (i == 20) {
            CHECK(moves(e.transitions) == Strings{"pending->firing"});
            CHECK(h.engine.status(1).state == AlertState::Firing);
        } else {
            CHECK(e.transitions.empty());
        }
    }

    // A learned baseline takes one sample a tick: evaluations between ticks add nothing.
    RuleSpec learned = rule("learned");
    learned.threshold = 2.0;
    learned.threshold_kind = ThresholdKind::Factor;
    learned.baseline.kind = BaselineKind::Learned;
    learned.baseline.learn = 2s;
    Harness l({learned});
    l.engine.start(l.clock.now());
    l.tickAll(input(SeriesStats{1000, 20, 5min, nullptr}));  // a tick: 0.02
    for (int i = 0; i < 9; ++i) {
        l.clock.advance(100ms);
        l.tickAll(input(SeriesStats{1000, 900, 5min, nullptr}), false);  // 0.9, not sampled
    }
    l.clock.advance(100ms);
    l.tickAll(input(SeriesStats{1000, 40, 5min, nullptr}));  // a tick: 0.04
    l.clock.advance(1s);
    l.tickAll(input(SeriesStats{1000, 50, 5min, nullptr}), false);  // 2 s: frozen between ticks
    CHECK_FALSE(l.engine.status(0).learning);
    CHECK(*l.engine.status(0).baseline == Approx(0.03));
}

TEST_CASE("keep_firing_for: healthy this long, continuously, before resolving", "[rules][timing]") {
    RuleSpec r = rule("err");
    r.keep_firing_for = 2min;
    Harness h({r});
    CHECK(h.stateAfter(input(breachStats())) == AlertState::Firing);
    h.clock.advance(1min);
    CHECK(h.stateAfter(input(healthyStats())) == AlertState::Firing);
    h.clock.advance(1min);
    // A breach restarts the recovery clock.
    CHECK(h.stateAfter(input(breachStats())) == AlertState::Firing);
    h.clock.advance(30s);
    CHECK(h.stateAfter(input(healthyStats())) == AlertState::Firing);
    h.clock.advance(2min - 1ns);
    CHECK(h.stateAfter(input(healthyStats())) == AlertState::Firing);
    h.clock.advance(1ns);
    CHECK(moves(h.tickAll(input(healthyStats())).transitions) == Strings{"firing->resolved"});
}

TEST_CASE("no_data: ok resets, breach counts, hold freezes state and timers", "[rules][timing]") {
    RuleSpec r = rule("err");
    r.for_ = 5min;
    r.min_samples = 100;
    const SeriesStats too_few{10, 10, 5min, nullptr};

    SECTION("ok") {
        Harness h({r});
        CHECK(h.stateAfter(input(breachStats())) == AlertState::Pending);
        h.clock.advance(1min);
        CHECK(h.stateAfter(input(too_few)) == AlertState::Inactive);
    }
    SECTION("breach") {
        r.no_data = GapPolicy::Breach;
        Harness h({r});
        CHECK(h.stateAfter(input(too_few)) == AlertState::Pending);
        h.clock.advance(5min);
        CHECK(h.stateAfter(input(too_few)) == AlertState::Firing);
    }
    SECTION("hold does not advance `for`") {
        r.no_data = GapPolicy::Hold;
        Harness h({r});
        const TimePoint t0 = h.clock.now();
        CHECK(h.stateAfter(input(breachStats())) == AlertState::Pending);
        for (int i = 0; i < 3; ++i) {
            h.clock.advance(1min);
            CHECK(h.stateAfter(input(too_few)) == AlertState::Pending);
        }
        CHECK(h.engine.status(0).since == t0 + 3min);
        h.clock.advance(2min);  // t0 + 5m: only 2 minutes of breach so far
        CHECK(h.stateAfter(input(breachStats())) == AlertState::Pending);
        h.clock.advance(3min);  // 5 minutes of breach
        CHECK(h.stateAfter(input(breachStats())) == AlertState::Firing);
        // Holding while firing keeps firing.
        h.clock.advance(1min);
        CHECK(h.stateAfter(input(too_few)) == AlertState::Firing);
    }
}

TEST_CASE("on_error with an error budget", "[rules][timing]") {
    RuleSpec r = rule("err");
    r.on_error = GapPolicy::Breach;
    r.error_budget = 2;
    Harness h({r});
    CHECK(h.stateAfter(errorInput()) == AlertState::Inactive);
    h.clock.advance(10s);
    CHECK(h.stateAfter(errorInput()) == AlertState::Inactive);
    h.clock.advance(10s);
    CHECK(h.stateAfter(errorInput()) == AlertState::Firing);
    h.clock.advance(10s);
    CHECK(h.stateAfter(input(healthyStats())) == AlertState::Inactive);
    // A success resets the budget.
    h.clock.advance(10s);
    CHECK(h.stateAfter(errorInput()) == AlertState::Inactive);
    h.clock.advance(10s);
    CHECK(h.stateAfter(errorInput()) == AlertState::Inactive);

    SECTION("on_error = ok resolves a firing rule once the budget is spent") {
        RuleSpec ok = rule("err");
        ok.on_error = GapPolicy::Ok;
        ok.error_budget = 1;
        Harness h2({ok});
        CHECK(h2.stateAfter(input(breachStats())) == AlertState::Firing);
        CHECK(h2.stateAfter(errorInput()) == AlertState::Firing);
        CHECK(moves(h2.tickAll(errorInput()).transitions) == Strings{"firing->resolved"});
    }
}

TEST_CASE("delay: no pending, no firing during warm-up - `for` starts after it", "[rules][timing]") {
    RuleSpec r = rule("err");
    r.delay = 5min;
    r.for_ = 1min;
    Harness h({r});
    const TimePoint t0 = h.clock.now();
    h.engine.start(t0);
    for (int i = 0; i < 5; ++i) {
        CHECK(h.stateAfter(input(breachStats())) == AlertState::Inactive);
        CHECK(h.engine.status(0).last.value == 0.1);
        h.clock.advance(1min);
    }
    CHECK(h.clock.now() == t0 + 5min);
    CHECK(h.stateAfter(input(breachStats())) == AlertState::Pending);
    CHECK(h.engine.status(0).since == t0 + 5min);
    h.clock.advance(1min);
    CHECK(h.stateAfter(input(breachStats())) == AlertState::Firing);
}

TEST_CASE("critical latches - a warning repeats every repeat_interval and sends resolved", "[rules][timing]") {
    RuleSpec w = rule("warn", Severity::Warning);
    w.source = "other";
    w.hooks = {"slack"};
    w.repeat_interval = 4h;
    Harness h({w});
    CHECK(kinds(h.tickAll(input(breachStats())).notifications) == Strings{"warn:fire"});
    h.clock.advance(4h - 1s);
    CHECK(h.tickAll(input(breachStats())).notifications.empty());
    h.clock.advance(1s);
    const auto e = h.tickAll(input(breachStats()));
    CHECK(kinds(e.notifications) == Strings{"warn:repeat"});
    CHECK(e.notifications[0].hooks == Strings{"slack"});
    h.clock.advance(1min);
    const auto resolved = h.tickAll(input(healthyStats()));
    CHECK(kinds(resolved.notifications) == Strings{"warn:resolve"});
    CHECK(resolved.notifications[0].hooks == Strings{"slack"});
}

TEST_CASE("a firing critical inhibits warnings on the same source and group", "[rules][timing]") {
    RuleSpec crit = rule("crit");
    crit.selection.group_by = {"route"};
    RuleSpec warn = rule("warn", Severity::Warning);
    warn.threshold = 0.02;
    warn.hooks = {"slack"};
    warn.selection.group_by = {"route"};
    RuleSpec elsewhere = warn;
    elsewhere.name = "warn-other-source";
    elsewhere.source = "other";
    // The warning is listed first: criticals are still evaluated first.
    Harness h({warn, crit, elsewhere});
    h.set("warn", {input(breachStats(), "route=/a"), input(breachStats(), "route=/b")});
    h.set("crit", {input(breachStats(), "route=/a")});
    h.set("warn-other-source", {input(breachStats(), "route=/a")});
    auto e = h.tick();
    CHECK(kinds(e.notifications) ==
          Strings{"warn:fire:inhibited", "warn:fire", "crit:fire", "warn-other-source:fire"});
    CHECK(e.notifications[0].hooks.empty());
    CHECK(e.notifications[1].hooks == Strings{"slack"});
    CHECK(e.transitions[0].inhibited);
    CHECK(e.transitions[0].hooks_to_run.empty());
    CHECK(h.engine.groupStatuses(0)[0].inhibited);
    CHECK_FALSE(h.engine.groupStatuses(0)[1].inhibited);

    // Still inhibited: nothing sent, not even repeats.
    h.clock.advance(5h);
    e = h.tick();
    CHECK(kinds(e.notifications) == Strings{"warn:repeat", "warn-other-source:repeat"});
    CHECK(e.notifications[0].group == "route=/b");

    // The critical resolves: the still-firing warning now sends its fire.
    h.clock.advance(1min);
    h.set("crit", {input(healthyStats(), "route=/a")});
    e = h.tick();
    CHECK(kinds(e.notifications) == Strings{"warn:fire", "crit:resolve"});
    CHECK(e.notifications[0].group == "route=/a");
}

TEST_CASE("dry_run evaluates and reports but runs no hook", "[rules][timing]") {
    RuleSpec r = rule("err");
    r.dry_run = true;
    Harness h({r});
    const auto e = h.tickAll(input(breachStats()));
    REQUIRE(e.transitions.size() == 1);
    CHECK(e.transitions[0].to == AlertState::Firing);
    CHECK(e.transitions[0].dry_run);
    CHECK(e.transitions[0].hooks_to_run.empty());
    CHECK(kinds(e.notifications) == Strings{"err:fire:dry_run"});
    CHECK(e.notifications[0].hooks.empty());
    CHECK(h.engine.status(0).latched);
}

TEST_CASE("relative thresholds against a baseline selection and a file value", "[rules][timing]") {
    BucketLatency canary({{0.250, 100}});
    BucketLatency stable({{0.100, 100}});
    RuleSpec r = rule("p99");
    r.metric.kind = MetricKind::Quantile;
    r.metric.quantile = 0.99;
    r.threshold = 2.0;
    r.threshold_kind = ThresholdKind::Factor;
    r.baseline.kind = BaselineKind::Selection;
    r.min_samples = 50;
    Harness h({r});
    EvalInput in = input(SeriesStats{100, 0, 5min, &canary});
    in.baseline = SeriesStats{100, 0, 5min, &stable};
    const auto fired = h.tickAll(in);
    CHECK(h.engine.status(0).state == AlertState::Firing);
    CHECK(h.engine.status(0).threshold == Approx(0.2));
    CHECK(h.engine.status(0).baseline == 0.1);
    CHECK_FALSE(h.engine.status(0).mann_whitney);
    // The transition and the notification carry the baseline the value was compared with.
    REQUIRE(fired.transitions.size() == 1);
    CHECK(fired.transitions[0].baseline == 0.1);
    REQUIRE(fired.notifications.size() == 1);
    CHECK(fired.notifications[0].baseline == 0.1);
    CHECK_FALSE(fired.notifications[0].mann_whitney);
    // A baseline below min_samples is no data.
    in.baseline = SeriesStats{10, 0, 5min, &stable};
    BucketLatency thin({{0.1, 10}});
    in.baseline->latency = &thin;
    CHECK(h.stateAfter(in) == AlertState::Inactive);
    CHECK_FALSE(h.engine.status(0).threshold.has_value());

    RuleSpec f = rule("file");
    f.threshold = 0.10;
    f.threshold_kind = ThresholdKind::Percent;
    f.baseline.kind = BaselineKind::File;
    Harness hf({f});
    EvalInput fin = input(SeriesStats{1000, 60, 5min, nullptr});
    fin.baseline_value = 0.05;  // effective threshold 0.055 < 0.06
    CHECK(hf.stateAfter(fin) == AlertState::Firing);
    CHECK(hf.engine.status(0).threshold == Approx(0.055));
}

TEST_CASE("a learned baseline averages the warm-up evaluations, then freezes", "[rules][timing]") {
    RuleSpec r = rule("learned");
    r.threshold = 2.0;
    r.threshold_kind = ThresholdKind::Factor;
    r.baseline.kind = BaselineKind::Learned;
    r.baseline.learn = 10min;
    r.delay = 1min;
    Harness h({r});
    h.engine.start(h.clock.now());
    // During the delay nothing is learned; then 0.02 and 0.04 (average 0.03).
    CHECK(h.stateAfter(input(SeriesStats{1000, 500, 5min, nullptr})) == AlertState::Inactive);
    CHECK(h.engine.status(0).learning);
    h.clock.advance(1min);
    h.tickAll(input(SeriesStats{1000, 20, 5min, nullptr}));
    h.clock.advance(5min);
    h.tickAll(input(SeriesStats{1000, 40, 5min, nullptr}));
    h.clock.advance(5min - 1ns);
    CHECK(h.stateAfter(input(SeriesStats{1000, 900, 5min, nullptr})) == AlertState::Inactive);
    CHECK(h.engine.status(0).learning);
    // 1m + 10m after start: frozen at the average of the three learning evaluations.
    h.clock.advance(1ns);
    h.tickAll(input(SeriesStats{1000, 50, 5min, nullptr}));
    CHECK_FALSE(h.engine.status(0).learning);
    const double learned = (0.02 + 0.04 + 0.9) / 3.0;
    CHECK(*h.engine.status(0).baseline == Approx(learned));
    CHECK(*h.engine.status(0).threshold == Approx(2 * learned));
    CHECK(h.engine.status(0).state == AlertState::Inactive);
}

TEST_CASE("compare = mann_whitney: canary vs baseline histograms", "[rules][timing]") {
    std::vector<std::pair<double, std::int64_t>> base_b;
    std::vector<std::pair<double, std::int64_t>> slow_b;
    for (int k = 0; k < 20; ++k) {
        base_b.emplace_back(0.010 + 0.001 * k, 50);
        slow_b.emplace_back((0.010 + 0.001 * k) * 1.3, 50);
    }
    BucketLatency base(base_b);
    BucketLatency slow(slow_b);
    RuleSpec r = rule("mw");
    r.compare.kind = CompareKind::MannWhitney;
    r.baseline.kind = BaselineKind::Selection;
    r.min_samples = 100;
    Harness h({r});
    EvalInput in = input(SeriesStats{1000, 0, 5min, &base});
    in.baseline = SeriesStats{1000, 0, 5min, &base};
    CHECK(h.stateAfter(in) == AlertState::Inactive);
    CHECK(h.engine.status(0).last.value == 0.0);
    CHECK(h.engine.status(0).threshold == 0.10);
    REQUIRE(h.engine.status(0).mann_whitney);
    CHECK(h.engine.status(0).mann_whitney->p_value == Approx(0.5).margin(0.05));
    in.stats.latency = &slow;
    const auto fired = h.tickAll(in);
    CHECK(h.engine.status(0).state == AlertState::Firing);
    CHECK(*h.engine.status(0).last.value == Approx(0.3));
    CHECK(h.engine.status(0).last.samples == 1000);
    // The test's statistics travel with the effect: the same result mannWhitney() gives.
    const MannWhitneyResult direct = mannWhitney(slow, base, r.compare);
    for (const auto* mw : {&h.engine.status(0).mann_whitney, &fired.transitions.at(0).mann_whitney,
                           &fired.notifications.at(0).mann_whitney}) {
        REQUIRE(mw->has_value());
        CHECK((*mw)->u == direct.u);
        CHECK((*mw)->z == direct.z);
        CHECK((*mw)->p_value == direct.p_value);
        CHECK((*mw)->n_canary == 1000);
        CHECK((*mw)->n_baseline == 1000);
    }
    CHECK(direct.p_value < 1e-6);
    CHECK_FALSE(fired.notifications.at(0).baseline);
    // No data (a side below min_samples): no test to report.
    BucketLatency thin({{0.01, 10}});
    in.baseline->latency = &thin;
    h.tickAll(in);
    CHECK_FALSE(h.engine.status(0).mann_whitney);
}

TEST_CASE("TickSchedule: evaluation times on the tick grid whatever the wake-up jitter", "[rules][timing]") {
    using rollguard::rules::TickSchedule;
    const TimePoint t0{std::chrono::seconds{1'700'000'000}};
    TickSchedule schedule(1s);
    CHECK(schedule.next(t0 + 3ms) == t0 + 3ms);  // the first tick anchors the grid
    // Wake-ups up to a quarter tick early or late land on the grid.
    CHECK(schedule.next(t0 + 1s + 3ms - 250ms) == t0 + 1s + 3ms);
    CHECK(schedule.next(t0 + 2s + 3ms + 250ms) == t0 + 2s + 3ms);
    CHECK(schedule.next(t0 + 3s - 1us) == t0 + 3s + 3ms);
    // A stall (or a clock step) re-anchors on the reading; the grid goes on from there.
    CHECK(schedule.next(t0 + 7s + 400ms) == t0 + 7s + 400ms);
    CHECK(schedule.next(t0 + 8s + 399ms) == t0 + 8s + 400ms);
    // A clock moved back, or by less than a tick (two evaluations in a row): the reading.
    CHECK(schedule.next(t0 + 8s) == t0 + 8s);
    CHECK(schedule.next(t0 + 8s) == t0 + 8s);
}

TEST_CASE("TickSchedule: evaluations every 100 ms, every tenth of them a tick", "[rules][timing]") {
    using rollguard::rules::TickSchedule;
    const TimePoint t0{std::chrono::seconds{1'700'000'000}};
    TickSchedule schedule(1s, 100ms);
    CHECK(schedule.every() == 100ms);
    CHECK(schedule.next(t0 + 7ms) == t0 + 7ms);
    CHECK(schedule.onTick());  // the first evaluation is a tick
    for (int i = 1; i <= 25; ++i) {
        // Up to a quarter interval (25 ms) early or late: on the grid.
        const auto jitter = std::chrono::milliseconds{i % 2 == 0 ? 24 : -24};
        CHECK(schedule.next(t0 + 7ms + i * 100ms + jitter) == t0 + 7ms + i * 100ms);
        CHECK(schedule.onTick() == (i % 10 == 0));
    }
    // A stall restarts the grid, with a tick at the reading.
    CHECK(schedule.next(t0 + 3s + 560ms) == t0 + 3s + 560ms);
    CHECK(schedule.onTick());
    CHECK(schedule.next(t0 + 3s + 660ms) == t0 + 3s + 660ms);
    CHECK_FALSE(schedule.onTick());
    // An interval not below the tick: every evaluation is a tick.
    TickSchedule plain(1s, 1s);
    CHECK(plain.every() == 1s);
    plain.next(t0);
    CHECK(plain.onTick());
    plain.next(t0 + 1s);
    CHECK(plain.onTick());
}
