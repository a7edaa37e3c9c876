// `rollguard replay` as users run it: the real binary on real files; text and JSON output,
// exit codes.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <simdjson.h>

#include "process.h"
#include "temp_dir.h"

using namespace rollguard::testing;

namespace {

const char* kConfig =
    "[agent]\n"
    "listen = \"\"\n"
    "[[source]]\n"
    "name = \"router\"\n"
    "type = \"json_log\"\n"
    "paths = [\"/nonexistent/*.log\"]\n"
    "latency = { field = \"duration_ms\", unit = \"ms\" }\n"
    "error = { field = \"status\", gte = 500 }\n"
    "[[source]]\n"
    "name = \"plain\"\n"
    "type = \"json_log\"\n"
    "paths = [\"/nonexistent/*.log\"]\n";

// 2,000 lines: latency 1..100 ms (20 each); every 40th a 503 (50 errors); 2 bad lines.
std::string logContent() {
    std::string out;
    for (int i = 0; i < 2000; ++i) {
        out += R"({"status":)" + std::to_string(i % 40 == 0 ? 503 : 200) + R"(,"duration_ms":)" +
               std::to_string(i % 100 + 1) + "}\n";
    }
    return out + "garbage\n{\"status\":200,\"duration_ms\":\"later\"}\n";
}

/// Runs argv to completion; returns (exit code, stdout alone): the config's warnings go
/// to stderr, and --json - must stay parseable.
std::pair<int, std::string> runStdout(const TempDir& dir, const std::vector<std::string>& argv) {
    const auto out = (dir / "stdout.txt").string();
    Process p(argv, out, (dir / "stderr.txt").string());
    const auto code = p.wait(std::chrono::seconds{30});
    REQUIRE(code.has_value());
    return {*code, readFile(out)};
}

struct Fixture {
    TempDir dir;
    std::string config = (dir / "rollguard.toml").string();
    std::string log = (dir / "access.log").string();
    Fixture() {
        writeFile(config, kConfig);
        writeFile(log, logContent());
    }
};

}  // namespace

TEST_CASE("rollguard replay prints the figures of every source", "[replay][integration]") {
    Fixture f;
    const auto [code, out] = runCommand({ROLLGUARD_BIN, "replay", "--config", f.config, f.log});
    INFO(out);
    CHECK(code == 0);
    CHECK(out.find("source router: 1 file(s), 2002 lines") != std::string::npos);
    CHECK(out.find("bad lines: 2 (invalid_json 1, not_an_object 0, bad_latency 1, too_long 0, invalid_utf8 0, bad_timestamp 0)") != std::string::npos);
    CHECK(out.find("events: 2000, errors: 50, error ratio: 0.025 (2.50%)") != std::string::npos);
    CHECK(out.find("latency (2000 events): p50 ") != std::string::npos);
    CHECK(out.find("lines/s") != std::string::npos);
    // The second source sees the same file: no latency field, so no bad latency.
    CHECK(out.find("source plain: 1 file(s), 2002 lines") != std::string::npos);
    CHECK(out.find("events: 2001, errors: 0, error ratio: 0 (0.00%)") != std::string::npos);
    CHECK(out.find("latency: no latencies recorded") != std::string::npos);
    // stderr is not a terminal here: no progress line.
    CHECK(out.find("\r") == std::string::npos);
}

TEST_CASE("rollguard replay --json writes exact counts", "[replay][integration]") {
    Fixture f;
    const auto json_path = (f.dir / "out.json").string();

    std::string json;
    SECTION("to a file, with the text on stdout") {
        const auto [code, out] =
            runCommand({ROLLGUARD_BIN, "replay", "--config", f.config, "--json", json_path, "--source", "router", f.log});
        INFO(out);
        REQUIRE(code == 0);
        CHECK(out.find("source router:") != std::string::npos);
        CHECK(out.find("source plain:") == std::string::npos);
        json = readFile(json_path);
    }
    SECTION("to stdout, alone") {
        const auto [code, out] =
            runStdout(f.dir, {ROLLGUARD_BIN, "replay", "-c", f.config, "--source", "router", "--json", "-", f.log});
        REQUIRE(code == 0);
        json = out;
    }

    INFO(json);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    REQUIRE(parser.parse(json).get(doc) == simdjson::SUCCESS);
    simdjson::dom::array sources;
    REQUIRE(doc["sources"].get(sources) == simdjson::SUCCESS);
    REQUIRE(sources.size() == 1);
    const auto s = sources.at(0);
    CHECK(std::string(s["name"].get_string().value()) == "router");
    CHECK(s["lines"].get_uint64().value() == 2002);
    CHECK(s["bytes"].get_uint64().value() == logContent().size());
    CHECK(s["events"].get_int64().value() == 2000);
    CHECK(s["errors"].get_int64().value() == 50);
    CHECK(s["error_ratio"].get_double().value() == Approx(0.025));
    CHECK(s["bad_lines"]["total"].get_uint64().value() == 2);
    CHECK(s["bad_lines"]["invalid_json"].get_uint64().value() == 1);
    CHECK(s["bad_lines"]["bad_latency"].get_uint64().value() == 1);
    CHECK(s["latency_seconds"]["count"].get_int64().value() == 2000);
    CHECK(s["latency_seconds"]["p50"].get_double().value() == Approx(0.050).epsilon(0.001));
    CHECK(s["latency_seconds"]["p99"].get_double().value() == Approx(0.099).epsilon(0.001));
    CHECK(s["latency_seconds"]["max"].get_double().value() == Approx(0.100).epsilon(0.001));
    CHECK(s["lines_per_second"].get_double().value() > 0.0);
}

TEST_CASE("rollguard replay: `rate` over event time is exact from the first tick, no false alarm while the window fills",
          "[replay][integration][rate]") {
    // Exactly 10 lines a second for 60 s, at 50 ms past each tenth of a second; a 30 s
    // window. Every tick's rate is 10/s: 10 events over the second they stand for, 20 over
    // two, ..., 300 over 30. Rules a hair below and above it must never go pending.
    TempDir dir;
    std::string log;
    for (int i = 0; i < 600; ++i) {
        const int ms = 100 * i + 50;
        log += fmt::format("{{\"ts\":\"2026-12-01T10:{:02}:{:02}.{:03}Z\",\"status\":200}}\n", ms / 60000,
                           ms / 1000 % 60, ms % 1000);
    }
    writeFile(dir / "app.log", log);
    std::string config = "[agent]\nlisten = \"\"\ntick = \"1s\"\n"
                         "[[source]]\nname = \"app\"\ntype = \"json_log\"\npaths = [\"/nonexistent.log\"]\n"
                         "time = \"event\"\ntimestamp = \"ts\"\n";
    for (const auto& [name, condition] : {std::pair{"too-few", "below = 9.99"}, std::pair{"too-many", "above = 10.01"}}) {
        config += fmt::format("[[rule]]\nname = \"{}\"\nsource = \"app\"\nmetric = \"rate\"\n{}\nwindow = \"30s\"\n"
                              "severity = \"warning\"\n",
                              name, condition);
    }
    writeFile(dir / "rollguard.toml", config);
    const auto [code, json] = runStdout(dir, {ROLLGUARD_BIN, "replay", "-c", (dir / "rollguard.toml").string(),
                                              "--json", "-", (dir / "app.log").string()});
    REQUIRE(code == 0);
    INFO(json);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    REQUIRE(parser.parse(json).get(doc) == simdjson::SUCCESS);
    simdjson::dom::array rules;
    REQUIRE(doc["timeline"].get(rules) == simdjson::SUCCESS);
    REQUIRE(rules.size() == 2);
    for (const auto rule : rules) {
        INFO(rule["rule"].get_string().value());
        CHECK(rule["events"].get_array().value().size() == 0);
        simdjson::dom::array points;
        REQUIRE(rule["points"].get(points) == simdjson::SUCCESS);
        REQUIRE(points.size() == 60);
        std::int64_t samples = 0;
        for (const auto point : points) {
            samples = std::min<std::int64_t>(samples + 10, 300);
            double value = 0.0;
            REQUIRE(point["value"].get_double().get(value) == simdjson::SUCCESS);
            CHECK(value == Approx(10.0).epsilon(1e-12));
            CHECK(point["samples"].get_int64().value() == samples);
        }
    }
}

TEST_CASE("rollguard replay reads what rollguard-loggen writes", "[replay][integration]") {
    Fixture f;
    const auto gen = (f.dir / "gen.log").string();
    const auto [gen_code, gen_out] = runCommand({ROLLGUARD_LOGGEN_BIN, "-o", gen, "--count", "5000", "--no-sleep",
                                                 "--wide", "--rate", "1000", "--healthy", "2", "--seed", "7"});
    INFO(gen_out);
    REQUIRE(gen_code == 0);
    const std::string content = readFile(gen);
    std::size_t lines = 0;
    std::size_t errors = 0;
    for (std::size_t pos = 0; pos < content.size();) {
        const auto end = content.find('\n', pos);
        const std::string line = content.substr(pos, end - pos);
        ++lines;
        errors += line.find(R"("status":50)") != std::string::npos ? 1 : 0;
        pos = end + 1;
    }
    REQUIRE(lines == 5000);
    CHECK(errors > 0);  // 3,000 degraded lines at ~8% 5xx

    const auto [code, out] =
        runStdout(f.dir, {ROLLGUARD_BIN, "replay", "--config", f.config, "--source", "router", "--json", "-", gen});
    REQUIRE(code == 0);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    REQUIRE(parser.parse(out).get(doc) == simdjson::SUCCESS);
    const auto s = doc["sources"].at(0);
    CHECK(s["lines"].get_uint64().value() == 5000);
    CHECK(s["events"].get_int64().value() == 5000);
    CHECK(s["errors"].get_int64().value() == static_cast<std::int64_t>(errors));
    CHECK(s["bad_lines"]["total"].get_uint64().value() == 0);
}

TEST_CASE("rollguard replay exit codes", "[replay][integration]") {
    Fixture f;
    SECTION("--help") {
        const auto [code, out] = runCommand({ROLLGUARD_BIN, "replay", "--help"});
        CHECK(code == 0);
        CHECK(out.find("--json") != std::string::npos);
        CHECK(out.find("--source") != std::string::npos);
    }
    SECTION("a missing LOG exits 1 and names it") {
        const auto missing = (f.dir / "missing.log").string();
        const auto [code, out] = runCommand({ROLLGUARD_BIN, "replay", "--config", f.config, f.log, missing});
        CHECK(code == 1);
        CHECK(out.find("cannot read " + missing + ": No such file or directory") != std::string::npos);
        CHECK(out.find("source router") == std::string::npos);
    }
    SECTION("a bad config exits 2 with file:line:col") {
        writeFile(f.config, "[[source]]\nname = \"x\"\ntype = \"json_log\"\npaths = [\"/a\"]\nlatncy = 1\n");
        const auto [code, out] = runCommand({ROLLGUARD_BIN, "replay", "--config", f.config, f.log});
        CHECK(code == 2);
        CHECK(out.find(f.config + ":5:1: error:") != std::string::npos);
    }
    SECTION("usage errors exit 2") {
        CHECK(runCommand({ROLLGUARD_BIN, "replay", "--config", f.config}).first == 2);
        CHECK(runCommand({ROLLGUARD_BIN, "replay", f.log}).first == 2);
        const auto [code, out] = runCommand({ROLLGUARD_BIN, "replay", "--config", f.config, "--source", "nope", f.log});
        CHECK(code == 2);
        CHECK(out.find("unknown source 'nope'") != std::string::npos);
    }
}

namespace {

// A canary 2.5 x slower than stable from second 20 of 40, 50 requests a second each.
const char* kCanaryConfig =
    "[agent]\n"
    "listen = \"\"\n"
    "[[source]]\n"
    "name = \"app\"\n"
    "type = \"json_log\"\n"
    "paths = [\"/nonexistent/*.log\"]\n"
    "latency = { field = \"duration_ms\", unit = \"ms\" }\n"
    "labels = { variant = \"variant\" }\n"
    "timestamp = \"ts\"\n"
    "timestamp_unit = \"ms\"\n"
    "[[rule]]\n"
    "name = \"canary-slower\"\n"
    "source = \"app\"\n"
    "metric = \"p50\"\n"
    "labels = { variant = \"canary\" }\n"
    "baseline = { labels = { variant = \"stable\" } }\n"
    "compare = \"mann_whitney\"\n"
    "window = \"10s\"\n"
    "min_samples = 200\n"
    "[[rule]]\n"
    "name = \"canary-p99\"\n"
    "source = \"app\"\n"
    "metric = \"p99\"\n"
    "labels = { variant = \"canary\" }\n"
    "baseline = { labels = { variant = \"stable\" } }\n"
    "above = \"2x\"\n"
    "window = \"10s\"\n"
    "min_samples = 100\n";

std::string canaryLog() {
    std::string out;
    const long long start_ms = 1798761600000LL;  // 2027-01-01T00:00:00Z
    for (int s = 0; s < 40; ++s) {
        for (int i = 0; i < 50; ++i) {
            const long long ts = start_ms + s * 1000LL + i * 20LL;
            const double stable = 20.0 + i;
            const double canary = s >= 20 ? 2.5 * stable : stable;
            out += "{\"ts\":" + std::to_string(ts) + ",\"variant\":\"stable\",\"duration_ms\":" +
                   std::to_string(stable) + "}\n";
            out += "{\"ts\":" + std::to_string(ts + 10) + ",\"variant\":\"canary\",\"duration_ms\":" +
                   std::to_string(canary) + "}\n";
        }
    }
    return out;
}

/// The first event of `rule` in the replay JSON's timeline that moved to `to`.
simdjson::dom::element eventOf(simdjson::dom::element doc, const std::string& rule, const std::string& to) {
    // Arrays held in variables: ranging over `get_array().value()` would range over a
    // reference into a temporary that is gone when the loop starts.
    simdjson::dom::array rules;
    REQUIRE(doc["timeline"].get(rules) == simdjson::SUCCESS);
    for (const auto r : rules) {
        if (std::string(r["rule"].get_string().value()) != rule) {
            continue;
        }
        simdjson::dom::array events;
        REQUIRE(r["events"].get(events) == simdjson::SUCCESS);
        for (const auto e : events) {
            if (std::string(e["to"].get_string().value()) == to) {
                return e;
            }
        }
    }
    FAIL("no event of " << rule << " to " << to);
    return {};
}

}  // namespace

TEST_CASE("rollguard replay says what a comparison's and a baseline rule's values are",
          "[replay][integration][rule_value]") {
    TempDir dir;
    const auto config = (dir / "canary.toml").string();
    const auto log = (dir / "canary.log").string();
    writeFile(config, kCanaryConfig);
    writeFile(log, canaryLog());

    const auto [code, text] = runStdout(dir, {ROLLGUARD_BIN, "replay", "--config", config, log});
    INFO(text);
    REQUIRE(code == 0);
    const auto cmp_at = text.find("  canary-slower (critical): p50 worse than the baseline");
    const auto rel_at = text.find("  canary-p99 (critical): p99 above 2x the baseline");
    REQUIRE(cmp_at != std::string::npos);
    REQUIRE(rel_at != std::string::npos);
    // The comparison's line: the effect as a change, the p-value, the limits; never ms.
    const auto fire = text.find("inactive -> firing  p50 +", cmp_at);
    REQUIRE(fire != std::string::npos);
    const std::string cmp_line = text.substr(fire, text.find('\n', fire) - fire);
    CHECK(cmp_line.find("% vs baseline, p=") != std::string::npos);
    CHECK(cmp_line.find("e-") != std::string::npos);  // a tiny p in short scientific form
    CHECK(cmp_line.find(" (threshold +10.0%, p < 0.02)  ") != std::string::npos);
    CHECK(cmp_line.find("ms") == std::string::npos);
    // The baseline rule's line: value, baseline, ratio and the threshold as written.
    const auto rel_fire = text.find("inactive -> firing  p99=", rel_at);
    REQUIRE(rel_fire != std::string::npos);
    const std::string rel_line = text.substr(rel_fire, text.find('\n', rel_fire) - rel_fire);
    CHECK(rel_line.find("ms vs baseline ") != std::string::npos);
    CHECK(rel_line.find("x, threshold 2x)  ") != std::string::npos);

    const auto [json_code, json] = runStdout(dir, {ROLLGUARD_BIN, "replay", "--config", config, "--json", "-", log});
    INFO(json);
    REQUIRE(json_code == 0);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    REQUIRE(parser.parse(json).get(doc) == simdjson::SUCCESS);

    const auto cmp = eventOf(doc, "canary-slower", "firing");
    // It fires on the first tick the effect passes +10%, with the test beside it.
    CHECK(cmp["value"].get_double().value() > 0.10);
    CHECK(cmp["threshold"].get_double().value() == Approx(0.10));
    const auto mw = cmp["mann_whitney"];
    CHECK(mw["n_canary"].get_int64().value() >= 200);
    CHECK(mw["n_baseline"].get_int64().value() >= 200);
    const double n1 = static_cast<double>(mw["n_canary"].get_int64().value());
    const double n2 = static_cast<double>(mw["n_baseline"].get_int64().value());
    CHECK(mw["u"].get_double().value() > n1 * n2 / 2.0);
    CHECK(mw["u"].get_double().value() <= n1 * n2);
    CHECK(mw["z"].get_double().value() > 3.0);
    CHECK(mw["p_value"].get_double().value() < 1e-3);
    CHECK(cmp["baseline"].error() == simdjson::NO_SUCH_FIELD);
    // Once the whole window is slow: the effect of a 2.5 x slower canary (median ratio).
    simdjson::dom::array rules;
    REQUIRE(doc["timeline"].get(rules) == simdjson::SUCCESS);
    for (const auto r : rules) {
        if (std::string(r["rule"].get_string().value()) == "canary-slower") {
            const auto points = r["points"].get_array().value();
            const auto last = points.at(points.size() - 1).value();
            CHECK(last["value"].get_double().value() == Approx(1.5).margin(0.05));
            CHECK(last["mann_whitney"]["n_canary"].get_int64().value() == 500);
            CHECK(last["mann_whitney"]["n_baseline"].get_int64().value() == 500);
            CHECK(last["mann_whitney"]["p_value"].get_double().value() < 1e-10);
        }
    }

    const auto rel = eventOf(doc, "canary-p99", "firing");
    const double value = rel["value"].get_double().value();
    const double baseline = rel["baseline"].get_double().value();
    CHECK(baseline == Approx(0.069).epsilon(0.02));  // stable's p99
    CHECK(rel["ratio"].get_double().value() == Approx(value / baseline));
    CHECK(rel["ratio"].get_double().value() > 2.0);
    CHECK(rel["threshold"].get_double().value() == Approx(2.0 * baseline));
    CHECK(rel["mann_whitney"].error() == simdjson::NO_SUCH_FIELD);
}
