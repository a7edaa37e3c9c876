// The Judge alone (issue #5): rule selections route the tailer's label sets to
// per-group streams, baselines come from a second selection or a JSON file, event-time
// parts respect lateness. Config text in, RecordedParts in, inputs and decisions out.

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/agent/judge.h"
#include "rollguard/agent/log_source.h"
#include "rollguard/agent/sliding_window.h"
#include "rollguard/rules/clock.h"
#include "temp_dir.h"

using namespace rollguard;
using namespace rollguard::agent;
using namespace std::chrono_literals;
using rollguard::testing::TempDir;
using rollguard::testing::writeFile;
using Ids = std::vector<std::uint32_t>;

namespace {

const rules::TimePoint t0{std::chrono::seconds{1'700'000'000}};

// Labels are kept sorted by name: a label set is {route, variant}.
const std::string kSource = R"(
[agent]
tick = "1s"
listen = ""

[[source]]
name = "app"
type = "json_log"
paths = ["/nonexistent/app.log"]
latency = { field = "duration_ms", unit = "ms" }
error = { field = "status", gte = 500 }
labels = { variant = "variant", route = "route" }
)";

std::string diagnosticsText(const LoadResult& r) {
    std::string out;
    for (const auto& d : r.diagnostics) {
        out += d.format() + "\n";
    }
    return out;
}

Config load(const std::string& text, const std::string& path = "/etc/rollguard/judge.toml") {
    const LoadResult r = parseConfig(text, path);
    INFO(diagnosticsText(r));
    REQUIRE(r.ok());
    return *r.config;
}

Ids route(const StreamRouter& router, const std::string& route, const std::string& variant) {
    Ids out;
    router(LabelSet{route, variant}, out);
    return out;
}

/// `events` events (the first `errors` of them errors), each with latency `ms`.
RecordedPart part(const Judge& judge, std::uint32_t stream, std::int64_t events, std::int64_t errors = 0,
                  double ms = -1.0, std::optional<rules::TimePoint> at = std::nullopt) {
    const HistogramSettings& settings = judge.series(0).settings();
    RecordedPart p{stream, at, IntervalStats(settings)};
    p.stats.events = events;
    p.stats.errors = errors;
    if (ms >= 0.0) {
        for (std::int64_t i = 0; i < events; ++i) {
            p.stats.latency.record(static_cast<std::int64_t>(ms / 1000.0 * settings.units_per_second));
        }
    }
    return p;
}

const rules::EvalInput* findGroup(const std::vector<rules::EvalInput>& inputs, const std::string& group) {
    for (const auto& in : inputs) {
        if (in.group == group) {
            return &in;
        }
    }
    return nullptr;
}

}  // namespace

TEST_CASE("judge: labels = { variant = \"canary\" } reads only canary label sets", "[judge]") {
    Judge judge(load(kSource + R"(
[[rule]]
name = "canary-errors"
source = "app"
metric = "count"
above = 1000
labels = { variant = "canary" }
window = "10s"
)"));
    REQUIRE(judge.sourceCount() == 1);
    const StreamRouter router = judge.routerFor(0);
    REQUIRE(router);
    CHECK(route(router, "/a", "canary") == Ids{1});
    CHECK(route(router, "/b", "canary") == Ids{1});  // ungrouped: one stream for every match
    CHECK(route(router, "/a", "stable").empty());
    CHECK(route(router, "/a", "").empty());

    const auto now = t0 + 1s;
    CHECK(judge.addPart(0, part(judge, 0, 19), now, 1s));
    CHECK(judge.addPart(0, part(judge, 1, 7, 2), now, 1s));
    judge.evaluate(now);
    const auto inputs = judge.inputsFor(0);
    REQUIRE(inputs.size() == 1);
    CHECK(inputs[0].group.empty());
    CHECK(inputs[0].stats.events == 7);
    CHECK(inputs[0].stats.errors == 2);
    CHECK_FALSE(inputs[0].baseline);
    CHECK(judge.statsFor(0).events == 19);  // stream 0: everything
    REQUIRE(judge.engine().status(0).last.value);
    CHECK(*judge.engine().status(0).last.value == 7.0);
}

TEST_CASE("judge: an ungrouped selection nothing matched yet is no data, not everything", "[judge]") {
    Judge judge(load(kSource + R"(
[[rule]]
name = "canary-count"
source = "app"
metric = "count"
above = 5
labels = { variant = "canary" }
window = "10s"
)"));
    const auto now = t0 + 1s;
    CHECK(judge.addPart(0, part(judge, 0, 50), now, 1s));
    const auto evaluation = judge.evaluate(now);
    CHECK(evaluation.transitions.empty());
    const auto inputs = judge.inputsFor(0);
    REQUIRE(inputs.size() == 1);
    CHECK(inputs[0].stats.events == 0);
    CHECK(inputs[0].stats.window == 10s);
    CHECK(judge.engine().status(0).last.samples == 0);
    CHECK(judge.engine().status(0).state == rules::AlertState::Inactive);
}

TEST_CASE("judge: group_by = [\"route\"] gives one input per route with exactly the counts fed", "[judge]") {
    Judge judge(load(kSource + R"(
[[rule]]
name = "route-errors"
source = "app"
metric = "error_ratio"
above = 0.5
group_by = ["route"]
window = "10s"
)"));
    const StreamRouter router = judge.routerFor(0);
    CHECK(route(router, "/a", "canary") == Ids{1});
    CHECK(route(router, "/b", "canary") == Ids{2});
    CHECK(route(router, "/a", "stable") == Ids{1});  // same route, same group
    CHECK(route(router, "", "stable") == Ids{3});     // a missing label is ""

    auto now = t0 + 1s;
    CHECK(judge.addPart(0, part(judge, 1, 10, 1), now, 1s));
    CHECK(judge.addPart(0, part(judge, 2, 4, 3), now, 1s));
    CHECK(judge.addPart(0, part(judge, 3, 2, 0), now, 1s));
    auto evaluation = judge.evaluate(now);
    auto inputs = judge.inputsFor(0);
    REQUIRE(inputs.size() == 3);
    const auto* a = findGroup(inputs, "route=/a");
    const auto* b = findGroup(inputs, "route=/b");
    const auto* none = findGroup(inputs, "route=");
    REQUIRE(a != nullptr);
    REQUIRE(b != nullptr);
    REQUIRE(none != nullptr);
    CHECK(a->stats.events == 10);
    CHECK(a->stats.errors == 1);
    CHECK(b->stats.events == 4);
    CHECK(b->stats.errors == 3);
    CHECK(none->stats.events == 2);
    CHECK(none->stats.errors == 0);
    // for = 0: only route /b (75% errors) fires.
    REQUIRE(evaluation.transitions.size() == 1);
    CHECK(evaluation.transitions[0].group == "route=/b");
    CHECK(evaluation.transitions[0].to == rules::AlertState::Firing);

    // A second tick adds to the same streams; the window holds both.
    now += 1s;
    CHECK(judge.addPart(0, part(judge, 1, 5, 0), now, 1s));
    evaluation = judge.evaluate(now);
    inputs = judge.inputsFor(0);
    CHECK(findGroup(inputs, "route=/a")->stats.events == 15);
    CHECK(findGroup(inputs, "route=/b")->stats.events == 4);
    CHECK(judge.engine().groupStatuses(0).size() == 3);
}

TEST_CASE("judge: max_groups caps the groups - later label sets share __other__", "[judge]") {
    Judge judge(load(kSource + R"(
[[rule]]
name = "route-count"
source = "app"
metric = "count"
above = 100
group_by = ["route"]
max_groups = 2
window = "10s"
)"));
    const StreamRouter router = judge.routerFor(0);
    CHECK(route(router, "/a", "x") == Ids{1});
    CHECK(route(router, "/b", "x") == Ids{2});
    CHECK(route(router, "/c", "x") == Ids{3});
    CHECK(route(router, "/d", "x") == Ids{3});
    CHECK(route(router, "/a", "y") == Ids{1});  // a known group stays itself

    const auto now = t0 + 1s;
    CHECK(judge.addPart(0, part(judge, 1, 1), now, 1s));
    CHECK(judge.addPart(0, part(judge, 2, 2), now, 1s));
    CHECK(judge.addPart(0, part(judge, 3, 7), now, 1s));
    judge.evaluate(now);
    const auto inputs = judge.inputsFor(0);
    REQUIRE(inputs.size() == 3);
    CHECK(findGroup(inputs, "route=/a")->stats.events == 1);
    CHECK(findGroup(inputs, "route=/b")->stats.events == 2);
    REQUIRE(findGroup(inputs, "__other__") != nullptr);
    CHECK(findGroup(inputs, "__other__")->stats.events == 7);
    CHECK(findGroup(inputs, "route=/c") == nullptr);
    CHECK(judge.engine().droppedInputs(0) == 0);
}

TEST_CASE("judge: rules with the same selection share streams - different selections do not", "[judge]") {
    Judge judge(load(kSource + R"(
[[rule]]
name = "canary-count"
source = "app"
metric = "count"
above = 100
labels = { variant = "canary" }
window = "10s"

[[rule]]
name = "canary-errors"
source = "app"
metric = "error_ratio"
above = 0.5
labels = { variant = "canary" }
window = "30s"

[[rule]]
name = "canary-routes"
source = "app"
metric = "count"
above = 100
labels = { variant = "canary" }
group_by = ["route"]
window = "10s"

[[rule]]
name = "stable-count"
source = "app"
metric = "count"
above = 100
labels = { variant = "stable" }
window = "10s"
)"));
    const StreamRouter router = judge.routerFor(0);
    // One stream for the two rules on { variant = "canary" }, one for the grouped rule.
    CHECK(route(router, "/a", "canary") == Ids{1, 2});
    CHECK(route(router, "/b", "canary") == Ids{1, 3});
    CHECK(route(router, "/a", "stable") == Ids{4});

    auto now = t0 + 1s;
    CHECK(judge.addPart(0, part(judge, 1, 10, 4), now, 1s));
    CHECK(judge.addPart(0, part(judge, 4, 3, 0), now, 1s));
    judge.evaluate(now);
    // 20 s later the 10 s window has forgotten, the 30 s one has not: the shared stream
    // carries both windows.
    now += 20s;
    CHECK(judge.addPart(0, part(judge, 1, 2, 2), now, 1s));
    judge.evaluate(now);
    CHECK(judge.inputsFor(0).at(0).stats.events == 2);
    CHECK(judge.inputsFor(1).at(0).stats.events == 12);
    CHECK(judge.inputsFor(1).at(0).stats.errors == 6);
    CHECK(judge.inputsFor(3).at(0).stats.events == 0);
}

TEST_CASE("judge: a baseline selection gives canary group g the stable stats of group g", "[judge][baseline]") {
    Judge judge(load(kSource + R"(
[[rule]]
name = "canary-p99"
source = "app"
metric = "p99"
labels = { variant = "canary" }
group_by = ["route"]
baseline = { labels = { variant = "stable" } }
above = "2x"
window = "10s"
)"));
    const StreamRouter router = judge.routerFor(0);
    // Slot 0 is the rule's selection, slot 1 the baseline (inheriting group_by).
    CHECK(route(router, "/a", "canary") == Ids{1});
    CHECK(route(router, "/a", "stable") == Ids{2});
    CHECK(route(router, "/b", "stable") == Ids{3});
    CHECK(route(router, "/b", "canary") == Ids{4});
    CHECK(route(router, "/c", "canary") == Ids{5});  // no stable /c: no baseline
    CHECK(route(router, "/a", "other").empty());

    const auto now = t0 + 1s;
    CHECK(judge.addPart(0, part(judge, 1, 100, 0, 100.0), now, 1s));  // canary /a 100 ms
    CHECK(judge.addPart(0, part(judge, 2, 100, 0, 40.0), now, 1s));   // stable /a 40 ms
    CHECK(judge.addPart(0, part(judge, 3, 100, 0, 40.0), now, 1s));   // stable /b 40 ms
    CHECK(judge.addPart(0, part(judge, 4, 100, 0, 60.0), now, 1s));   // canary /b 60 ms
    CHECK(judge.addPart(0, part(judge, 5, 100, 0, 500.0), now, 1s));  // canary /c 500 ms
    const auto evaluation = judge.evaluate(now);

    const auto inputs = judge.inputsFor(0);
    REQUIRE(inputs.size() == 3);
    const auto* a = findGroup(inputs, "route=/a");
    const auto* b = findGroup(inputs, "route=/b");
    const auto* c = findGroup(inputs, "route=/c");
    REQUIRE(a != nullptr);
    REQUIRE(b != nullptr);
    REQUIRE(c != nullptr);
    REQUIRE(a->baseline);
    REQUIRE(a->baseline->latency != nullptr);
    CHECK(a->baseline->events == 100);
    CHECK(a->baseline->latency->quantileSeconds(0.99) == Approx(0.040).epsilon(0.01));
    REQUIRE(b->baseline);
    CHECK(b->baseline->latency->quantileSeconds(0.99) == Approx(0.040).epsilon(0.01));
    CHECK(a->stats.latency->quantileSeconds(0.99) == Approx(0.100).epsilon(0.01));
    CHECK_FALSE(c->baseline);

    // /a: 100 ms > 2 x 40 ms fires; /b: 60 ms < 80 ms stays; /c has no baseline: no data.
    REQUIRE(evaluation.transitions.size() == 1);
    CHECK(evaluation.transitions[0].group == "route=/a");
    CHECK(evaluation.transitions[0].to == rules::AlertState::Firing);
    REQUIRE(evaluation.transitions[0].threshold);
    CHECK(*evaluation.transitions[0].threshold == Approx(0.080).epsilon(0.01));
    for (const auto& status : judge.engine().groupStatuses(0)) {
        INFO(status.group);
        CHECK(status.state == (status.group == "route=/a" ? rules::AlertState::Firing : rules::AlertState::Inactive));
        if (status.group == "route=/c") {
            CHECK_FALSE(status.threshold);
        } else {
            REQUIRE(status.threshold);
            CHECK(*status.threshold == Approx(0.080).epsilon(0.01));
        }
    }
}

TEST_CASE("judge: an ungrouped baseline selection compares the whole canary with the whole stable",
          "[judge][baseline]") {
    Judge judge(load(kSource + R"(
[[rule]]
name = "canary-errors"
source = "app"
metric = "error_ratio"
labels = { variant = "canary" }
baseline = { labels = { variant = "stable" } }
above = "+50%"
window = "10s"
)"));
    const StreamRouter router = judge.routerFor(0);
    CHECK(route(router, "/a", "canary") == Ids{1});
    CHECK(route(router, "/a", "stable") == Ids{2});
    CHECK(route(router, "/b", "stable") == Ids{2});
    auto now = t0 + 1s;
    CHECK(judge.addPart(0, part(judge, 1, 100, 14), now, 1s));
    CHECK(judge.addPart(0, part(judge, 2, 200, 20), now, 1s));
    auto evaluation = judge.evaluate(now);
    CHECK(evaluation.transitions.empty());  // 14% is not above 10% x 1.5 = 15%
    REQUIRE(judge.engine().status(0).threshold);
    CHECK(*judge.engine().status(0).threshold == Approx(0.15));
    now += 1s;
    CHECK(judge.addPart(0, part(judge, 1, 100, 2), now, 1s));  // 16 / 200 = 8%... of canary
    CHECK(judge.addPart(0, part(judge, 2, 200, 0), now, 1s));  // 20 / 400 = 5%
    evaluation = judge.evaluate(now);
    REQUIRE(evaluation.transitions.size() == 1);  // 8% > 7.5%
    CHECK(evaluation.transitions[0].to == rules::AlertState::Firing);
    CHECK(*evaluation.transitions[0].threshold == Approx(0.075));
}

TEST_CASE("judge: a baseline file is read at its pointer, re-read when it changes, no data when missing",
          "[judge][baseline]") {
    TempDir dir;
    const std::string config_path = (dir / "rollguard.toml").string();
    Judge judge(load(kSource + R"(
[[rule]]
name = "p99-vs-release"
source = "app"
metric = "p99"
baseline = { file = "baseline.json", pointer = "/latency/p99" }
above = "2x"
window = "10s"
)",
                     config_path));
    auto now = t0 + 1s;
    CHECK(judge.addPart(0, part(judge, 0, 100, 0, 100.0), now, 1s));  // p99 = 100 ms

    // No file yet: no baseline, no data (no_data = ok: inactive).
    auto evaluation = judge.evaluate(now);
    CHECK(evaluation.transitions.empty());
    REQUIRE(judge.inputsFor(0).size() == 1);
    CHECK_FALSE(judge.inputsFor(0)[0].baseline_value);
    CHECK_FALSE(judge.engine().status(0).threshold);

    writeFile(dir / "baseline.json", R"({"latency": {"p99": 0.060, "p50": 0.01}})");
    now += 1s;
    evaluation = judge.evaluate(now);
    REQUIRE(judge.inputsFor(0)[0].baseline_value);
    CHECK(*judge.inputsFor(0)[0].baseline_value == 0.060);
    CHECK(evaluation.transitions.empty());  // 100 ms < 120 ms
    CHECK(*judge.engine().status(0).threshold == Approx(0.120));

    // Rewritten with the same size: the mtime tells.
    writeFile(dir / "baseline.json", R"({"latency": {"p99": 0.040, "p50": 0.01}})");
    std::filesystem::last_write_time(dir / "baseline.json",
                                     std::filesystem::last_write_time(dir / "baseline.json") + 2s);
    now += 1s;
    evaluation = judge.evaluate(now);
    CHECK(*judge.inputsFor(0)[0].baseline_value == 0.040);
    REQUIRE(evaluation.transitions.size() == 1);  // 100 ms > 80 ms
    CHECK(evaluation.transitions[0].to == rules::AlertState::Firing);

    // A numeric string is a number too.
    writeFile(dir / "baseline.json", R"({"latency": {"p99": "0.25"}})");
    now += 1s;
    judge.evaluate(now);
    CHECK(*judge.inputsFor(0)[0].baseline_value == 0.25);
    CHECK(judge.engine().status(0).state == rules::AlertState::Inactive);

    // Not JSON, no number at the pointer, and a missing file: no baseline.
    writeFile(dir / "baseline.json", "{\"latency\": ");
    CHECK_FALSE(judge.inputsFor(0)[0].baseline_value);
    writeFile(dir / "baseline.json", R"({"latency": {"p50": 0.01}})");
    CHECK_FALSE(judge.inputsFor(0)[0].baseline_value);
    writeFile(dir / "baseline.json", R"({"latency": {"p99": 0.030}})");
    CHECK(*judge.inputsFor(0)[0].baseline_value == 0.030);
    std::filesystem::remove(dir / "baseline.json");
    CHECK_FALSE(judge.inputsFor(0)[0].baseline_value);
}

TEST_CASE("judge: readJsonNumber reads numbers and numeric strings at a pointer, nothing else", "[judge][baseline]") {
    TempDir dir;
    const std::string path = (dir / "b.json").string();
    writeFile(dir / "b.json", R"({"a": 1.5, "s": "2e-3", "bad": "12ms", "o": {"x/y": 7}, "arr": [3, 4], "t": true})");
    CHECK(readJsonNumber(path, "/a") == std::optional<double>(1.5));
    CHECK(readJsonNumber(path, "/s") == std::optional<double>(0.002));
    CHECK(readJsonNumber(path, "/o/x~1y") == std::optional<double>(7.0));
    CHECK(readJsonNumber(path, "/arr/1") == std::optional<double>(4.0));
    CHECK_FALSE(readJsonNumber(path, "/bad"));
    CHECK_FALSE(readJsonNumber(path, "/t"));
    CHECK_FALSE(readJsonNumber(path, "/o"));
    CHECK_FALSE(readJsonNumber(path, "/missing"));
    CHECK_FALSE(readJsonNumber((dir / "none.json").string(), "/a"));
    // No pointer: the whole document, which must then be a number.
    writeFile(dir / "n.json", " 42 \n");
    CHECK(readJsonNumber((dir / "n.json").string(), "") == std::optional<double>(42.0));
    writeFile(dir / "n.json", "\"0.5\"");
    CHECK(readJsonNumber((dir / "n.json").string(), "") == std::optional<double>(0.5));
    writeFile(dir / "n.json", "42 43");
    CHECK_FALSE(readJsonNumber((dir / "n.json").string(), ""));
    CHECK_FALSE(readJsonNumber(path, ""));
}

TEST_CASE("judge: event-time parts older than lateness are refused - future ones are recorded at now",
          "[judge][time]") {
    Judge judge(load(R"(
[agent]
tick = "1s"
listen = ""

[[source]]
name = "app"
type = "json_log"
paths = ["/nonexistent/app.log"]
time = "event"
timestamp = "ts"
lateness = "30s"

[[rule]]
name = "count"
source = "app"
metric = "count"
above = 1000
window = "60s"
)"));
    const auto now = t0 + 100s;
    judge.evaluate(now);
    // The bucket [now-31s, now-30s) ended exactly `lateness` ago: still accepted.
    CHECK(judge.addPart(0, part(judge, 0, 1, 0, -1.0, now - 31s), now, 1s));
    // [now-32s, now-31s) ended more than 30 s ago: refused and not recorded.
    CHECK_FALSE(judge.addPart(0, part(judge, 0, 10, 0, -1.0, now - 32s), now, 1s));
    CHECK_FALSE(judge.addPart(0, part(judge, 0, 100, 0, -1.0, now - 1h), now, 1s));
    CHECK(judge.addPart(0, part(judge, 0, 1000, 0, -1.0, now - 5s), now, 1s));
    // 100 s in the future: recorded at now, not 100 s ahead.
    CHECK(judge.addPart(0, part(judge, 0, 10000, 0, -1.0, now + 100s), now, 1s));
    judge.evaluate(now);
    CHECK(judge.statsFor(0).events == 11001);

    // The 60 s window has 200 ms slots: at t it covers (t - 60 s, t] to the slot. The
    // future part leaves with the slot of `now`, so it was not stamped now + 100 s.
    judge.evaluate(now + 25s);
    CHECK(judge.statsFor(0).events == 11001);
    judge.evaluate(now + 30s);
    CHECK(judge.statsFor(0).events == 11000);
    judge.evaluate(now + 56s);
    CHECK(judge.statsFor(0).events == 10000);
    judge.evaluate(now + 60s);
    CHECK(judge.statsFor(0).events == 0);
}

// ---------------------------------------------------------------------------------------
// Config check: selections against the source's labels, baseline files

namespace {

std::vector<std::string> diagnosticsOf(const LoadResult& r, Diagnostic::Level level) {
    std::vector<std::string> out;
    for (const auto& d : r.diagnostics) {
        if (d.level == level) {
            out.push_back(d.format());
        }
    }
    return out;
}

std::vector<std::string> baselineWarnings(const LoadResult& r) {
    std::vector<std::string> out;
    for (const auto& w : diagnosticsOf(r, Diagnostic::Level::Warning)) {
        if (w.find("baseline file") != std::string::npos) {
            out.push_back(w);
        }
    }
    return out;
}

}  // namespace

TEST_CASE("config: a selection naming a label its source does not define is an error with a hint",
          "[judge][config]") {
    // kSource ends on line 12; the rule starts on line 14.
    const LoadResult r = parseConfig(kSource + R"(
[[rule]]
name = "canary-p99"
source = "app"
metric = "p99"
labels = { varient = "canary", route = "=~/api/.*" }
group_by = ["route", "host"]
baseline = { labels = { variant = "stable", rute = "/a" } }
above = "2x"
)",
                                     "/etc/rollguard/r.toml");
    CHECK_FALSE(r.ok());
    const auto errors = diagnosticsOf(r, Diagnostic::Level::Error);
    CHECK(errors == std::vector<std::string>{
                        "/etc/rollguard/r.toml:18:12: error: label 'varient' is not defined by source \"app\" (did "
                        "you mean 'variant'?); its labels: route, variant",
                        "/etc/rollguard/r.toml:19:22: error: label 'host' is not defined by source \"app\"; its "
                        "labels: route, variant",
                        "/etc/rollguard/r.toml:20:45: error: label 'rute' is not defined by source \"app\" (did you "
                        "mean 'route'?); its labels: route, variant",
                    });

    // A source without labels says how to add one.
    const LoadResult none = parseConfig(R"([[source]]
name = "plain"
type = "json_log"
paths = ["x"]

[[rule]]
name = "r"
source = "plain"
metric = "count"
above = 1
labels = { variant = "canary" }
)",
                                        "/etc/rollguard/p.toml");
    CHECK(diagnosticsOf(none, Diagnostic::Level::Error) ==
          std::vector<std::string>{"/etc/rollguard/p.toml:11:12: error: label 'variant' is not defined by source "
                                   "\"plain\", which has no labels (add labels = { variant = \"<field>\" } to its "
                                   "[[source]])"});

    // Defined labels pass.
    const LoadResult good = parseConfig(kSource + R"(
[[rule]]
name = "canary-p99"
source = "app"
metric = "p99"
labels = { variant = "canary" }
group_by = ["route"]
baseline = { labels = { variant = "stable" } }
above = "2x"
)",
                                        "/etc/rollguard/r.toml");
    INFO(diagnosticsText(good));
    CHECK(good.ok());
    CHECK(diagnosticsOf(good, Diagnostic::Level::Error).empty());
}

TEST_CASE("config: a baseline file that does not exist is a warning, not an error", "[judge][config]") {
    TempDir dir;
    const std::string path = (dir / "r.toml").string();
    const std::string rule = R"(
[[rule]]
name = "p99-vs-release"
source = "app"
metric = "p99"
baseline = { file = "baseline.json", pointer = "/p99" }
above = "+20%"
)";
    const LoadResult missing = parseConfig(kSource + rule, path);
    INFO(diagnosticsText(missing));
    REQUIRE(missing.ok());
    CHECK(missing.config->rules.at(0).baseline.file == (dir / "baseline.json").string());
    CHECK(baselineWarnings(missing) ==
          std::vector<std::string>{path + ":18:21: warning: baseline file \"" + (dir / "baseline.json").string() +
                                   "\" does not exist (yet): the rule has no data until it is written"});

    writeFile(dir / "baseline.json", R"({"p99": 0.2})");
    const LoadResult present = parseConfig(kSource + rule, path);
    REQUIRE(present.ok());
    CHECK(baselineWarnings(present).empty());
}
