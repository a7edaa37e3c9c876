// Labels with a cardinality cap, and event time with allowed lateness (issue #4): the
// parser's fields, the label-set table, the tailer's streams and buckets, late data in
// the store, too-late dropping in the daemon, replay's per-label-set report, config.

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/agent/daemon.h"
#include "rollguard/agent/log_source.h"
#include "rollguard/agent/replay.h"
#include "rollguard/agent/sliding_window.h"
#include "rollguard/exporters/http_server.h"
#include "rollguard/rules/clock.h"
#include "process.h"
#include "temp_dir.h"

using namespace rollguard;
using namespace rollguard::agent;
using namespace std::chrono_literals;
using rollguard::testing::TempDir;
using rollguard::testing::writeFile;
using Strings = std::vector<std::string>;

namespace {

const rules::TimePoint t0{std::chrono::seconds{1'700'000'000}};

LogSourceConfig labelConfig() {
    LogSourceConfig c;
    c.name = "app";
    LatencyField lf;
    lf.field = "duration_ms";
    lf.unit = LatencyUnit::Milliseconds;
    c.latency = lf;
    c.error.kind = ErrorPredicate::Kind::NumberAtLeast;
    c.error.field = "status";
    c.error.gte = 500;
    c.labels = {LabelField{"route", "http.route"}, LabelField{"variant", "variant"}};
    return c;
}

LogSourceConfig eventConfig(LatencyUnit unit) {
    LogSourceConfig c;
    c.name = "app";
    c.time = TimeMode::Event;
    c.timestamp = "ts";
    c.timestamp_unit = unit;
    return c;
}

Strings labelsOf(const ParsedLine& p) {
    return Strings(p.labels.begin(), p.labels.end());
}

IntervalStats statsWith(std::int64_t events, std::int64_t errors, std::vector<std::int64_t> latencies) {
    IntervalStats s;
    s.events = events;
    s.errors = errors;
    for (const auto v : latencies) {
        s.latency.record(v);
    }
    return s;
}

Strings configErrors(const std::string& body) {
    const LoadResult r =
        parseConfig("[[source]]\nname = \"s\"\ntype = \"json_log\"\npaths = [\"x\"]\n" + body, "/etc/rollguard/r.toml");
    Strings out;
    for (const auto& d : r.diagnostics) {
        if (d.level == Diagnostic::Level::Error) {
            const std::string f = d.format();
            out.push_back(f.substr(f.find(".toml:") + 6));
        }
    }
    CHECK(r.ok() == out.empty());
    return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Parser

TEST_CASE("labels: strings as is, numbers as JSON text, booleans, missing and null empty", "[labels][parser]") {
    LineParser parser(labelConfig());
    ParsedLine p = parser.parse(R"({"http":{"route":"/a"},"variant":"canary","status":200,"duration_ms":5})");
    REQUIRE(p.ok);
    CHECK(labelsOf(p) == Strings{"/a", "canary"});
    p = parser.parse(R"({"http":{"route":404},"variant":true,"status":200})");
    REQUIRE(p.ok);
    CHECK(labelsOf(p) == Strings{"404", "true"});
    p = parser.parse(R"({"http":{"route":-1.5e3 },"variant":false})");
    REQUIRE(p.ok);
    CHECK(labelsOf(p) == Strings{"-1.5e3", "false"});
    p = parser.parse(R"({"variant":null,"status":500})");
    REQUIRE(p.ok);
    CHECK(p.error);
    CHECK(labelsOf(p) == Strings{"", ""});
    // Objects and arrays are absent, and the line is not bad.
    p = parser.parse(R"({"http":{"route":{"x":1}},"variant":[1,2]})");
    REQUIRE(p.ok);
    CHECK(labelsOf(p) == Strings{"", ""});
    // Escapes are unescaped; 128 bytes is kept, 129 is __other__.
    p = parser.parse(R"({"http":{"route":"a\"b"},"variant":")" + std::string(128, 'v') + "\"}");
    REQUIRE(p.ok);
    CHECK(labelsOf(p) == Strings{"a\"b", std::string(128, 'v')});
    p = parser.parse(R"({"http":{"route":")" + std::string(129, 'r') + R"("},"variant":"x"})");
    REQUIRE(p.ok);
    CHECK(labelsOf(p) == Strings{"__other__", "x"});
}

TEST_CASE("labels: a field shared by a label and the error predicate serves both", "[labels][parser]") {
    LogSourceConfig c = labelConfig();
    c.labels = {LabelField{"status", "status"}};
    LineParser parser(c);
    ParsedLine p = parser.parse(R"({"status":503,"duration_ms":1})");
    REQUIRE(p.ok);
    CHECK(p.error);
    CHECK(labelsOf(p) == Strings{"503"});
    p = parser.parse(R"({"duration_ms":1,"status":"200"})");
    REQUIRE(p.ok);
    CHECK_FALSE(p.error);
    CHECK(labelsOf(p) == Strings{"200"});
    CHECK(LineParser(labelConfig()).parse(R"({"a":1})").labels.size() == 2);
    CHECK(LineParser(eventConfig(LatencyUnit::Seconds)).parse(R"({"ts":1})").labels.empty());
}

TEST_CASE("event time: RFC 3339 with fractions and zones, epoch numbers in each unit", "[time][parser]") {
    constexpr std::int64_t base = 1'700'000'000LL * 1'000'000'000LL;
    LineParser s(eventConfig(LatencyUnit::Seconds));
    CHECK(s.parse(R"({"ts":"2023-11-14T22:13:20Z"})").event_time_ns == base);
    CHECK(s.parse(R"({"ts":"2023-11-14T22:13:20.123456789Z"})").event_time_ns == base + 123'456'789);
    CHECK(s.parse(R"({"ts":"2023-11-15T00:13:20.5+02:00"})").event_time_ns == base + 500'000'000);
    CHECK(s.parse(R"({"ts":1700000000})").event_time_ns == base);
    CHECK(s.parse(R"({"ts":1700000000.25})").event_time_ns == base + 250'000'000);
    CHECK(s.parse(R"({"ts":"1700000000"})").event_time_ns == base);
    CHECK(LineParser(eventConfig(LatencyUnit::Milliseconds)).parse(R"({"ts":1700000000123})").event_time_ns ==
          base + 123'000'000);
    CHECK(LineParser(eventConfig(LatencyUnit::Microseconds)).parse(R"({"ts":1700000000123456})").event_time_ns ==
          base + 123'456'000);
    CHECK(LineParser(eventConfig(LatencyUnit::Nanoseconds)).parse(R"({"ts":1700000000123456789})").event_time_ns ==
          base + 123'456'789);
    // Arrival time reads no timestamp.
    LogSourceConfig arrival = eventConfig(LatencyUnit::Seconds);
    arrival.time = TimeMode::Arrival;
    CHECK_FALSE(LineParser(arrival).parse(R"({"ts":"junk"})").event_time_ns.has_value());
}

TEST_CASE("event time: a missing or unusable timestamp is bad_timestamp", "[time][parser]") {
    LineParser s(eventConfig(LatencyUnit::Seconds));
    for (const char* line : {R"({"x":1})", R"({"ts":null})", R"({"ts":"yesterday"})", R"({"ts":"2023-11-14T22:13:20"})",
                             R"({"ts":true})", R"({"ts":{"s":1}})", R"({"ts":1e300})"}) {
        INFO(line);
        const ParsedLine p = s.parse(line);
        CHECK_FALSE(p.ok);
        CHECK(p.reason == BadLineReason::BadTimestamp);
    }
    CHECK(std::string(toString(BadLineReason::BadTimestamp)) == "bad_timestamp");
    // Other reasons come first.
    CHECK(s.parse("nope").reason == BadLineReason::InvalidJson);
}

// ---------------------------------------------------------------------------------------
// Label sets

TEST_CASE("label sets: interned by first appearance, capped, one overflow set", "[labels]") {
    LabelSetTable table(1, 2);
    bool overflowed = false;
    bool created = false;
    const auto intern = [&](std::string_view v) {
        const std::string_view values[] = {v};
        return table.intern(values, overflowed, created);
    };
    CHECK(intern("a") == 0);
    CHECK((created && !overflowed));
    CHECK(intern("b") == 1);
    CHECK(intern("a") == 0);
    CHECK((!created && !overflowed));
    CHECK(intern("c") == 2);
    CHECK((created && overflowed));
    CHECK(intern("d") == 2);
    CHECK((!created && overflowed));
    CHECK(intern("b") == 1);
    CHECK(!overflowed);
    CHECK(table.size() == 3);
    CHECK(table.labels(2) == LabelSet{"__other__"});
    CHECK(table.all() == std::vector<LabelSet>{{"a"}, {"b"}, {"__other__"}});
    // Values are length-prefixed: ("ab","") and ("a","b") are two sets.
    LabelSetTable two(2, 10);
    const std::string_view x[] = {"ab", ""};
    const std::string_view y[] = {"a", "b"};
    CHECK(two.intern(x, overflowed, created) == 0);
    CHECK(two.intern(y, overflowed, created) == 1);
}

TEST_CASE("tailer: labels feed routed streams, the router runs once per set, overflow counted",
          "[labels][tailer]") {
    TempDir dir;
    LogSourceConfig c = labelConfig();
    c.paths = {(dir / "app.log").string()};
    c.read_from = ReadFrom::Beginning;
    c.max_label_sets = 2;
    std::string text;
    for (int i = 0; i < 10; ++i) {
        text += R"({"http":{"route":"/a"},"variant":"canary","status":500,"duration_ms":10})" "\n";
        text += R"({"http":{"route":"/b"},"variant":"stable","status":200,"duration_ms":20})" "\n";
    }
    text += R"({"http":{"route":"/c"},"variant":"canary","status":200,"duration_ms":30})" "\n";
    text += R"({"http":{"route":"/d"},"variant":"canary","status":200})" "\n";
    writeFile(dir / "app.log", text);

    IntervalRecorder recorder;
    LogTailer tailer(c, recorder);
    std::vector<LabelSet> routed;
    tailer.setRouter([&](const LabelSet& labels, std::vector<std::uint32_t>& streams) {
        routed.push_back(labels);
        if (labels[1] == "canary") {
            streams.push_back(1);
        }
        if (labels[0] == "/b" || labels[0] == "__other__") {
            streams.push_back(2);
        }
    });
    tailer.pollOnce();
    CHECK(routed == std::vector<LabelSet>{{"/a", "canary"}, {"/b", "stable"}, {"__other__", "__other__"}});
    CHECK(tailer.counters().label_overflow == 2);
    CHECK(tailer.labelSets().size() == 3);

    SourcePositions positions;
    const auto parts = recorder.takeParts(&positions);
    REQUIRE(parts.size() == 3);
    CHECK(parts[0].stream == 0);
    CHECK_FALSE(parts[0].at.has_value());
    CHECK(parts[0].stats.events == 22);
    CHECK(parts[0].stats.errors == 10);
    CHECK(parts[0].stats.latency.totalCount() == 21);
    CHECK(parts[1].stream == 1);  // "/a" canary only: overflow sets are not canary
    CHECK(parts[1].stats.events == 10);
    CHECK(parts[1].stats.errors == 10);
    CHECK(parts[1].stats.latency.totalCount() == 10);
    CHECK(parts[2].stream == 2);  // "/b" and the two overflowed lines
    CHECK(parts[2].stats.events == 12);
    CHECK(parts[2].stats.errors == 0);
    CHECK(parts[2].stats.latency.totalCount() == 11);
    REQUIRE(positions.size() == 1);
    CHECK(positions[0].offset == text.size());
}

TEST_CASE("tailer: event time keys events by their bucket - take() merges stream 0", "[time][tailer]") {
    TempDir dir;
    LogSourceConfig c = eventConfig(LatencyUnit::Milliseconds);
    c.paths = {(dir / "app.log").string()};
    c.read_from = ReadFrom::Beginning;
    writeFile(dir / "app.log", "{\"ts\":1700000000100}\n{\"ts\":1700000001900}\n{\"ts\":1700000000999}\n"
                               "{\"ts\":\"bad\"}\n{\"ts\":1700000002000}\n");
    IntervalRecorder recorder;
    LogTailer tailer(c, recorder);
    tailer.setBucketWidth(2s);
    tailer.pollOnce();
    CHECK(tailer.counters().bad_timestamp == 1);
    CHECK(tailer.counters().badTotal() == 1);
    auto parts = recorder.takeParts();
    REQUIRE(parts.size() == 2);
    CHECK(parts[0].stream == 0);
    CHECK(parts[0].at == t0);
    CHECK(parts[0].stats.events == 3);
    CHECK(parts[1].at == t0 + 2s);
    CHECK(parts[1].stats.events == 1);

    writeFile(dir / "app.log", "{\"ts\":1700000000100}\n{\"ts\":1700000005000}\n");
    LogTailer again(c, recorder);
    again.pollOnce();
    CHECK(recorder.take().events == 2);
    CHECK(recorder.takeParts().empty());
}

// ---------------------------------------------------------------------------------------
// Store

TEST_CASE("series: late data within the rings equals the same data in time, to the byte", "[time][store]") {
    const auto feed = [](Series& s, bool late) {
        std::vector<IntervalStats> data;
        for (int i = 0; i < 40; ++i) {
            data.push_back(statsWith(10 + i, i % 3, {1000 * (i + 1), 77, 5000 + i}));
        }
        for (int i = 0; i < 40; ++i) {
            const auto at = t0 + std::chrono::seconds{i} + 300ms;
            const bool held = late && (i == 3 || i == 17 || i == 18 || i == 31);
            if (!held) {
                s.add(at, data[static_cast<std::size_t>(i)]);
            }
        }
        if (late) {
            for (int i : {31, 3, 18, 17}) {
                s.addAt(t0 + std::chrono::seconds{i} + 300ms, data[static_cast<std::size_t>(i)]);
            }
        }
    };
    Series in_time;
    Series late;
    WindowHandle handles[3];
    for (Series* s : {&in_time, &late}) {
        handles[0] = s->addWindow(10s);
        handles[1] = s->addWindow(30s);
        handles[2] = s->addWindow(1h);  // 15 s slots
    }
    feed(in_time, false);
    feed(late, true);
    const auto compare = [&] {
        for (const auto h : handles) {
            const WindowView& a = in_time.window(h);
            const WindowView& b = late.window(h);
            CHECK(a.events() == b.events());
            CHECK(a.errors() == b.errors());
            CHECK(a.covered() == b.covered());
            CHECK(a.latency().totalCount() == b.latency().totalCount());
            CHECK(a.quantileSeconds(0.99) == b.quantileSeconds(0.99));
        }
        CHECK(in_time.serialize() == late.serialize());
    };
    compare();
    CHECK(in_time.window(handles[1]).events() == 30 * 10 + (10 + 39) * 30 / 2);
    for (const auto step : {5s, 20s, 40s}) {
        in_time.advance(t0 + 40s + step);
        late.advance(t0 + 40s + step);
        compare();
    }
}

TEST_CASE("series: late data for a slot no ring holds is skipped - at or after the newest it is add()",
          "[time][store]") {
    Series s;
    const WindowHandle w10 = s.addWindow(10s);
    const WindowHandle w60 = s.addWindow(60s);
    s.add(t0 + 100s, statsWith(1, 0, {}));
    s.addAt(t0 + 70s, statsWith(5, 1, {}));  // 30 s back: only the 60 s window holds it
    CHECK(s.window(w10).events() == 1);
    CHECK(s.window(w60).events() == 6);
    CHECK(s.window(w60).errors() == 1);
    s.addAt(t0 + 10s, statsWith(7, 0, {}));  // held by no ring
    CHECK(s.window(w60).events() == 6);
    s.addAt(t0 + 100s, statsWith(2, 0, {}));  // the open slot
    CHECK(s.window(w10).events() == 3);
    s.addAt(t0 + 105s, statsWith(4, 0, {}));  // ahead: time moves
    CHECK(s.window(w10).events() == 7);
    CHECK(s.window(w60).events() == 12);
    s.advance(t0 + 131s);  // the slot at 70 s leaves the 60 s window exactly once
    CHECK(s.window(w60).events() == 7);
    s.advance(t0 + 161s);
    CHECK(s.window(w60).events() == 4);
    s.advance(t0 + 166s);
    CHECK(s.window(w60).events() == 0);
}

// ---------------------------------------------------------------------------------------
// Daemon and replay

TEST_CASE("daemon: event time within lateness lands in the window, too-late lines are counted and dropped",
          "[time][daemon]") {
    TempDir dir;
    Config c;
    c.path = (dir / "test.toml").string();
    c.agent.tick = 1s;
    c.agent.listen = "";
    c.agent.hostname = "unit";
    LogSourceConfig src = eventConfig(LatencyUnit::Seconds);
    src.paths = {(dir / "app.log").string()};
    src.read_from = ReadFrom::Beginning;
    src.lateness = 5s;
    src.error.kind = ErrorPredicate::Kind::NumberAtLeast;
    src.error.field = "status";
    src.error.gte = 500;
    src.labels = {LabelField{"route", "route"}};
    src.max_label_sets = 1;
    c.sources.push_back(src);
    rules::RuleSpec rule;
    rule.name = "errors";
    rule.severity = rules::Severity::Warning;
    rule.source = "app";
    rule.metric = {rules::MetricKind::ErrorRatio, 0.0, "error_ratio"};
    rule.threshold = 0.5;
    rule.window = 10s;
    c.rules.push_back(rule);

    const auto line = [](std::int64_t ts, int status, const char* route) {
        return "{\"ts\":" + std::to_string(ts) + ",\"status\":" + std::to_string(status) + ",\"route\":\"" + route +
               "\"}\n";
    };
    constexpr std::int64_t now = 1'700'000'100;
    std::string text;
    text += line(now - 3, 500, "/a");   // in time, in the window
    text += line(now - 5, 200, "/a");   // bucket [now-5, now-4) ends after now-5: kept
    text += line(now - 6, 200, "/b");   // bucket ends at now-5, not before it: kept
    text += line(now - 7, 200, "/b");   // ends at now-6 < now-5: too late
    text += line(now - 60, 500, "/a");  // too late
    text += line(now + 100, 200, "/a");  // the future: recorded now
    text += "{\"status\":200}\n";        // no timestamp: bad
    writeFile(dir / "app.log", text);

    rules::ManualClock clock(rules::TimePoint{std::chrono::seconds{now}});
    Daemon daemon(c, clock);
    daemon.pollSources();
    daemon.tick();
    auto s = daemon.snapshot();
    CHECK(s.sources[0].lines == 7);
    CHECK(s.sources[0].bad_timestamp == 1);
    CHECK(s.sources[0].too_late == 2);
    CHECK(s.sources[0].label_sets == 2);
    CHECK(s.sources[0].label_overflow == 2);
    CHECK(s.rules[0].samples == 4);
    REQUIRE(s.rules[0].value.has_value());
    CHECK(*s.rules[0].value == Approx(0.25));
    // Ten seconds on, the window has let them go; nothing is counted twice.
    clock.advance(10s);
    daemon.tick();
    s = daemon.snapshot();
    CHECK(s.sources[0].too_late == 2);
    CHECK(s.rules[0].samples == 0);
}

TEST_CASE("daemon: a tailer thread interns label sets and records event time while the tick reads them",
          "[labels][time][daemon][thread]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    Config c;
    c.path = (dir / "test.toml").string();
    c.agent.tick = 1s;
    c.agent.listen = "";
    c.agent.hostname = "unit";
    LogSourceConfig src = eventConfig(LatencyUnit::Milliseconds);
    src.paths = {(dir / "app.log").string()};
    src.poll_interval = 50ms;
    src.labels = {LabelField{"route", "route"}};
    src.max_label_sets = 50;
    c.sources.push_back(src);
    rules::RuleSpec rule;
    rule.name = "count";
    rule.severity = rules::Severity::Warning;
    rule.source = "app";
    rule.metric = {rules::MetricKind::Count, 0.0, "count"};
    rule.threshold = 1e9;
    rule.window = 1h;
    c.rules.push_back(rule);

    rules::ManualClock clock(t0);
    Daemon daemon(c, clock);
    daemon.start();
    constexpr std::int64_t base_ms = 1'700'000'000'000;
    for (int i = 0; i < 100; ++i) {
        std::string chunk;
        for (int j = 0; j < 10; ++j) {
            chunk += "{\"ts\":" + std::to_string(base_ms + i * 20) + ",\"route\":\"/r" + std::to_string((i * 10 + j) % 80) +
                     "\"}\n";
        }
        rollguard::testing::appendFile(dir / "app.log", chunk);
        clock.advance(20ms);
        daemon.tick();
        (void)daemon.snapshot();
    }
    std::int64_t events = 0;
    // The tailer thread catches up in its own time.
    rollguard::testing::eventually([&] {
        daemon.tick();
        events = daemon.snapshot().rules[0].samples;
        return events >= 1000;
    });
    daemon.stop();
    const auto s = daemon.snapshot();
    CHECK(events == 1000);
    CHECK(s.sources[0].label_sets == 51);
    CHECK(s.sources[0].label_overflow == 360);  // routes /r50../r79, 12 lines each
    CHECK(s.sources[0].too_late == 0);
}

TEST_CASE("replay: per-label-set totals, text top 20 and JSON all", "[labels][replay]") {
    TempDir dir;
    const std::string text =
        "[agent]\nlisten = \"\"\n[[source]]\nname = \"app\"\ntype = \"json_log\"\npaths = [\"/nonexistent/*.log\"]\n"
        "latency = { field = \"duration_ms\", unit = \"ms\" }\nerror = { field = \"status\", gte = 500 }\n"
        "labels = { route = \"route\" }\nmax_label_sets = 25\n";
    auto loaded = parseConfig(text, (dir / "r.toml").string());
    REQUIRE(loaded.ok());
    std::string log;
    for (int r = 0; r < 30; ++r) {
        for (int i = 0; i <= r; ++i) {
            log += "{\"route\":\"/r" + std::to_string(r) + "\",\"status\":" + (i == 0 ? "500" : "200") +
                   ",\"duration_ms\":" + std::to_string(r + 1) + "}\n";
        }
    }
    writeFile(dir / "a.log", log);
    const ReplayResult result = replayFiles(*loaded.config, {(dir / "a.log").string()});
    REQUIRE(result.ok());
    const ReplaySourceResult& s = result.sources.at(0);
    CHECK(s.events() == 465);
    CHECK(s.label_names == Strings{"route"});
    REQUIRE(s.label_sets.size() == 26);
    CHECK(s.label_sets[0].values == Strings{"/r0"});
    CHECK(s.label_sets[0].stats.events == 1);
    CHECK(s.label_sets[24].values == Strings{"/r24"});
    CHECK(s.label_sets[24].stats.events == 25);
    CHECK(s.label_sets[24].stats.errors == 1);
    CHECK(s.label_sets[25].values == Strings{"__other__"});
    CHECK(s.label_sets[25].stats.events == 26 + 27 + 28 + 29 + 30);
    CHECK(s.label_sets[25].stats.errors == 5);
    CHECK(s.label_overflow == 140);

    const std::string report = renderReplayText(result);
    CHECK(report.find("  label sets: 26 (lines over max_label_sets, in __other__: 140)\n"
                      "    {route=\"__other__\"}: events 140, error ratio 0.0357143, p99 30ms\n"
                      "    {route=\"/r24\"}: events 25, error ratio 0.04, p99 25ms\n") != std::string::npos);
    CHECK(report.find("{route=\"/r6\"}") != std::string::npos);
    CHECK(report.find("{route=\"/r5\"}") == std::string::npos);
    CHECK(report.find("    ... and 6 more\n") != std::string::npos);
    const std::string json = renderReplayJson(result);
    CHECK(json.find(R"({"labels":{"route":"/r0"},"events":1,"errors":1,"error_ratio":1,)") != std::string::npos);
    CHECK(json.find(R"("label_overflow":140)") != std::string::npos);
}

TEST_CASE("replay: event time sources count every line with a timestamp, whatever its age", "[time][replay]") {
    TempDir dir;
    const std::string text =
        "[agent]\nlisten = \"\"\n[[source]]\nname = \"app\"\ntype = \"json_log\"\npaths = [\"/nonexistent/*.log\"]\n"
        "error = { field = \"status\", gte = 500 }\ntime = \"event\"\ntimestamp = \"ts\"\nlabels = { s = \"status\" }\n";
    auto loaded = parseConfig(text, (dir / "r.toml").string());
    REQUIRE(loaded.ok());
    writeFile(dir / "a.log", "{\"ts\":\"1999-12-31T23:59:59Z\",\"status\":500}\n{\"ts\":\"2040-01-01T00:00:00Z\",\"status\":200}\n"
                             "{\"ts\":1700000000,\"status\":200}\n{\"status\":200}\n{\"ts\":-5,\"status\":200}\n");
    const ReplayResult result = replayFiles(*loaded.config, {(dir / "a.log").string()});
    REQUIRE(result.ok());
    const ReplaySourceResult& s = result.sources.at(0);
    CHECK(s.events() == 4);
    CHECK(s.errors() == 1);
    CHECK(s.bad_timestamp == 1);
    REQUIRE(s.label_sets.size() == 2);
    CHECK(s.label_sets[0].values == Strings{"500"});
    CHECK(s.label_sets[0].stats.events == 1);
    CHECK(s.label_sets[1].values == Strings{"200"});
    CHECK(s.label_sets[1].stats.events == 3);
    CHECK(renderReplayText(result).find("bad_timestamp 1)") != std::string::npos);
}

// ---------------------------------------------------------------------------------------
// Config

TEST_CASE("config: labels, max_label_sets, time, timestamp, timestamp_unit, lateness", "[labels][time][config]") {
    const LoadResult r = parseConfig("[[source]]\nname = \"s\"\ntype = \"json_log\"\npaths = [\"x\"]\n"
                                     "labels = { variant = \"deployment.variant\", route = \"http.route\" }\n"
                                     "max_label_sets = 7\ntime = \"event\"\ntimestamp = \"meta.ts\"\n"
                                     "timestamp_unit = \"ms\"\nlateness = \"2m\"\n",
                                     "/etc/rollguard/r.toml");
    REQUIRE(r.ok());
    const LogSourceConfig& s = r.config->sources[0];
    REQUIRE(s.labels.size() == 2);
    CHECK(s.labels[0].name == "route");
    CHECK(s.labels[0].field == "http.route");
    CHECK(s.labels[1].name == "variant");
    CHECK(s.labels[1].field == "deployment.variant");
    CHECK(s.max_label_sets == 7);
    CHECK(s.time == TimeMode::Event);
    CHECK(s.timestamp == "meta.ts");
    CHECK(s.timestamp_unit == LatencyUnit::Milliseconds);
    CHECK(s.lateness == 2min);

    const LoadResult d = parseConfig("[[source]]\nname = \"s\"\ntype = \"json_log\"\npaths = [\"x\"]\n", "/r.toml");
    REQUIRE(d.ok());
    CHECK(d.config->sources[0].labels.empty());
    CHECK(d.config->sources[0].max_label_sets == 100);
    CHECK(d.config->sources[0].time == TimeMode::Arrival);
    CHECK(d.config->sources[0].lateness == 30s);
}

TEST_CASE("config: label and time errors point at line:col", "[labels][time][config]") {
    CHECK(configErrors("labels = { 9lives = \"a\" }\n") ==
          Strings{"5:12: error: label name \"9lives\" must use letters, digits and '_' and not start with a digit"});
    CHECK(configErrors("labels = { __name__ = \"a\" }\n") ==
          Strings{"5:12: error: label name \"__name__\" must not start with \"__\" (reserved)"});
    CHECK(configErrors("labels = { route = \"a..b\", code = 3 }\n") ==
          Strings{"5:20: error: label 'route' must be a dotted field path like \"http.route\", got \"a..b\"",
                  "5:35: error: label 'code' must be a dotted field path string like \"http.route\", got integer"});
    CHECK(configErrors("labels = [\"route\"]\n") ==
          Strings{"5:10: error: 'labels' must be a table of label = \"field.path\", e.g. { route = \"http.route\" }, "
                  "got array"});
    CHECK(configErrors("max_label_sets = 0\n") ==
          Strings{"5:18: error: 'max_label_sets' must be between 1 and 100000, got 0"});
    CHECK(configErrors("time = \"event\"\n") ==
          Strings{"5:8: error: time = \"event\" needs 'timestamp', the field with each line's time, e.g. "
                  "timestamp = \"ts\""});
    CHECK(configErrors("time = \"evnt\"\n") ==
          Strings{"5:8: error: 'time' must be one of arrival, event; got \"evnt\" (did you mean 'event'?)"});
    // With arrival time a timestamp is allowed (replay's clock); lateness is not.
    CHECK(configErrors("timestamp = \"ts\"\n").empty());
    CHECK(configErrors("lateness = \"5s\"\n") == Strings{"5:1: error: 'lateness' is only used with time = \"event\""});
    CHECK(configErrors("timestamp_unit = \"ms\"\n") == Strings{"5:1: error: 'timestamp_unit' needs 'timestamp'"});
    CHECK(configErrors("time = \"event\"\ntimestamp = \"ts\"\ntimestamp_unit = \"sec\"\nlateness = \"-1s\"\n") ==
          Strings{"7:18: error: 'timestamp_unit' must be one of ns, us, ms, s; got \"sec\" (did you mean 's'?)",
                  "8:12: error: 'lateness' is not a valid duration: \"-1s\" (use a number and a unit: ns, us, ms, s, m, "
                  "h, d; e.g. \"500ms\", \"30s\", \"1h30m\")"});
}

// ---------------------------------------------------------------------------------------
// Exporters

TEST_CASE("metrics and status JSON carry label sets, label overflow, too_late and bad_timestamp",
          "[labels][time][exporters]") {
    StatusSnapshot s;
    s.started = std::chrono::system_clock::now();
    StatusSnapshot::Source src;
    src.name = "app";
    src.label_sets = 101;
    src.label_overflow = 42;
    src.too_late = 7;
    src.bad_timestamp = 3;
    s.sources.push_back(src);
    const std::string metrics = exporters::renderMetrics(s);
    CHECK(metrics.find("rollguard_source_label_sets{source=\"app\"} 101\n") != std::string::npos);
    CHECK(metrics.find("rollguard_source_label_overflow_total{source=\"app\"} 42\n") != std::string::npos);
    CHECK(metrics.find("rollguard_source_lines_dropped_total{source=\"app\",reason=\"too_late\"} 7\n") !=
          std::string::npos);
    CHECK(metrics.find("rollguard_source_bad_lines_total{source=\"app\",reason=\"bad_timestamp\"} 3\n") !=
          std::string::npos);
    const std::string json = exporters::renderStatusJson(s);
    CHECK(json.find(R"("bad_timestamp":3},"label_sets":101,"label_overflow_total":42,"too_late":7)") !=
          std::string::npos);
}
