// replayFiles: the batch face of the tailer and the store, on real files in a temp dir.

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/agent/replay.h"
#include "temp_dir.h"

using rollguard::agent::Config;
using rollguard::agent::parseConfig;
using rollguard::agent::ReplayOptions;
using rollguard::agent::ReplayProgress;
using rollguard::agent::ReplayResult;
using rollguard::agent::replayFiles;
using rollguard::testing::TempDir;
using rollguard::testing::writeFile;

namespace {

Config configFor(const std::string& extra_source = "") {
    const std::string text =
        "[agent]\nlisten = \"\"\n"
        "[[source]]\n"
        "name = \"app\"\n"
        "type = \"json_log\"\n"
        "paths = [\"/nonexistent/never-read/*.log\"]\n"
        "max_line_bytes = 1024\n"
        "latency = { field = \"duration_ms\", unit = \"ms\" }\n"
        "error = { field = \"status\", gte = 500 }\n" +
        extra_source;
    auto loaded = parseConfig(text, "/tmp/replay-test.toml");
    for (const auto& d : loaded.diagnostics) {
        INFO(d.format());
    }
    REQUIRE(loaded.ok());
    return std::move(*loaded.config);
}

// 10,000 good lines: latency 1..1000 ms, each value 10 times; every 50th line a 500.
// Then 3 invalid JSON, 2 not objects, 4 bad latencies, 1 too long, 2 blank lines.
constexpr std::uint64_t kGood = 10'000;
constexpr std::uint64_t kLines = kGood + 3 + 2 + 4 + 1 + 2;

std::string goodLines(std::uint64_t from, std::uint64_t to) {
    std::string out;
    for (std::uint64_t i = from; i < to; ++i) {
        out += R"({"ts":"2026-01-01T00:00:00Z","method":"GET","route":"/api/orders","status":)" +
               std::to_string(i % 50 == 0 ? 500 : 200) + R"(,"duration_ms":)" + std::to_string(i % 1000 + 1) +
               "}\n";
    }
    return out;
}

std::string badLines() {
    return "not json at all\n"
           "{\"status\":200,\n"
           "{\"status\":200,\"duration_ms\":5}}\n"
           "[1,2,3]\n"
           "42\n"
           "{\"status\":200,\"duration_ms\":-5}\n"
           "{\"status\":200,\"duration_ms\":\"soon\"}\n"
           "{\"status\":200,\"duration_ms\":true}\n"
           "{\"status\":200,\"duration_ms\":[1]}\n"
           "{\"status\":200,\"pad\":\"" + std::string(2000, 'x') + "\",\"duration_ms\":1}\n"
           "\n"
           "   \n";
}

void checkTotals(const rollguard::agent::ReplaySourceResult& s) {
    CHECK(s.lines == kLines);
    CHECK(s.events() == static_cast<std::int64_t>(kGood));
    CHECK(s.errors() == 200);
    CHECK(s.errorRatio() == Approx(0.02).epsilon(1e-12));
    CHECK(s.latencyCount() == static_cast<std::int64_t>(kGood));
    CHECK(s.bad_invalid_json == 3);
    CHECK(s.bad_not_object == 2);
    CHECK(s.bad_latency == 4);
    CHECK(s.bad_too_long == 1);
    CHECK(s.badTotal() == 10);
    CHECK(s.read_errors == 0);
    // Exact quantiles of 1..1000 ms (each 10 times) at ranks ceil(q * 10,000); the
    // histogram keeps 3 significant figures, so each is within 0.1%.
    CHECK(s.quantileSeconds(0.50) == Approx(0.500).epsilon(0.001));
    CHECK(s.quantileSeconds(0.90) == Approx(0.900).epsilon(0.001));
    CHECK(s.quantileSeconds(0.99) == Approx(0.990).epsilon(0.001));
    CHECK(s.quantileSeconds(0.999) == Approx(0.999).epsilon(0.001));
    CHECK(s.maxSeconds() == Approx(1.000).epsilon(0.001));
}

}  // namespace

TEST_CASE("replayFiles reads a file to its end with exact counts and quantiles", "[replay]") {
    TempDir dir;
    const auto path = (dir / "access.log").string();
    const std::string content = goodLines(0, kGood) + badLines();
    writeFile(path, content);

    const auto result = replayFiles(configFor(), {path});
    REQUIRE(result.ok());
    REQUIRE(result.sources.size() == 1);
    const auto& s = result.sources[0];
    CHECK(s.name == "app");
    CHECK(s.files == std::vector<std::string>{path});
    CHECK(s.bytes == content.size());
    checkTotals(s);
    CHECK(s.unterminated.empty());
    CHECK(s.wall_seconds > 0.0);
    CHECK(s.linesPerSecond() > 0.0);
}

TEST_CASE("replayFiles reads several files, and a file named twice once", "[replay]") {
    TempDir dir;
    const auto a = (dir / "a.log").string();
    const auto b = (dir / "b [1].log").string();  // glob characters are matched literally
    writeFile(a, goodLines(0, 4'000));
    writeFile(b, badLines() + goodLines(4'000, kGood));

    const auto result = replayFiles(configFor(), {a, b, a});
    REQUIRE(result.ok());
    REQUIRE(result.sources.size() == 1);
    CHECK(result.sources[0].files == std::vector<std::string>{a, b});
    checkTotals(result.sources[0]);
}

TEST_CASE("replayFiles sends every file through every source unless sources are chosen", "[replay]") {
    TempDir dir;
    const auto path = (dir / "access.log").string();
    writeFile(path, goodLines(0, kGood) + badLines());
    // A second view of the same lines: no latency, errors by level.
    const Config config = configFor(
        "[[source]]\n"
        "name = \"levels\"\n"
        "type = \"json_log\"\n"
        "paths = [\"/nonexistent/*.log\"]\n"
        "error = { field = \"status\", in = [\"x\"] }\n");

    SECTION("every source") {
        const auto result = replayFiles(config, {path});
        REQUIRE(result.ok());
        REQUIRE(result.sources.size() == 2);
        CHECK(result.sources[0].name == "app");
        checkTotals(result.sources[0]);
        const auto& levels = result.sources[1];
        CHECK(levels.name == "levels");
        CHECK(levels.lines == kLines);
        // Without a latency field no latency is bad, and with the default max_line_bytes
        // (64 KiB) the 2 kB line is an event too.
        CHECK(levels.events() == static_cast<std::int64_t>(kGood + 4 + 1));
        CHECK(levels.bad_invalid_json == 3);
        CHECK(levels.bad_not_object == 2);
        CHECK(levels.bad_latency == 0);
        CHECK(levels.bad_too_long == 0);
        CHECK(levels.errors() == 0);
        CHECK(levels.errorRatio() == 0.0);
        CHECK(levels.latencyCount() == 0);
        CHECK(std::isnan(levels.quantileSeconds(0.5)));
        CHECK(std::isnan(levels.maxSeconds()));
    }
    SECTION("chosen by name") {
        ReplayOptions options;
        options.sources = {"levels"};
        const auto result = replayFiles(config, {path}, options);
        REQUIRE(result.ok());
        REQUIRE(result.sources.size() == 1);
        CHECK(result.sources[0].name == "levels");
    }
    SECTION("an unknown name is a usage error and nothing is read") {
        ReplayOptions options;
        options.sources = {"app", "nope"};
        const auto result = replayFiles(config, {path}, options);
        CHECK_FALSE(result.ok());
        CHECK(result.sources.empty());
        REQUIRE(result.usage_errors.size() == 1);
        CHECK(result.usage_errors[0] == "unknown source 'nope' (the configuration has: app, levels)");
    }
}

TEST_CASE("replayFiles reports unreadable files before reading anything", "[replay]") {
    TempDir dir;
    const auto good = (dir / "good.log").string();
    writeFile(good, goodLines(0, 10));
    const auto missing = (dir / "missing.log").string();

    const auto result = replayFiles(configFor(), {good, missing, dir.path().string()});
    CHECK_FALSE(result.ok());
    CHECK(result.usage_errors.empty());
    CHECK(result.sources.empty());
    REQUIRE(result.file_errors.size() == 2);
    CHECK(result.file_errors[0] == missing + ": No such file or directory");
    CHECK(result.file_errors[1] == dir.path().string() + ": is a directory");

    const auto none = replayFiles(configFor(), {});
    REQUIRE(none.usage_errors.size() == 1);
    CHECK(none.usage_errors[0] == "no log files given");
}

TEST_CASE("replayFiles does not count a last line without its newline, and says so", "[replay]") {
    TempDir dir;
    const auto path = (dir / "torn.log").string();
    writeFile(path, goodLines(0, 100) + R"({"status":500,"duration_ms":7})");

    const auto result = replayFiles(configFor(), {path});
    REQUIRE(result.ok());
    const auto& s = result.sources[0];
    CHECK(s.lines == 100);
    CHECK(s.events() == 100);
    CHECK(s.errors() == 2);
    CHECK(s.unterminated == std::vector<std::string>{path});
    CHECK(rollguard::agent::renderReplayText(result).find("the last line of " + path + " has no newline") !=
          std::string::npos);
}

TEST_CASE("replay renders text and JSON with the same figures", "[replay]") {
    TempDir dir;
    const auto path = (dir / "access.log").string();
    writeFile(path, goodLines(0, kGood) + badLines());
    const auto result = replayFiles(configFor(), {path});
    REQUIRE(result.ok());

    const std::string text = rollguard::agent::renderReplayText(result);
    INFO(text);
    CHECK(text.find("source app: 1 file(s), 10012 lines") != std::string::npos);
    CHECK(text.find("bad lines: 10 (invalid_json 3, not_an_object 2, bad_latency 4, too_long 1, invalid_utf8 0, bad_timestamp 0)") !=
          std::string::npos);
    CHECK(text.find("events: 10000, errors: 200, error ratio: 0.02 (2.00%)") != std::string::npos);
    CHECK(text.find("latency (10000 events): p50 ") != std::string::npos);
    CHECK(text.find(" max ") != std::string::npos);
    CHECK(text.find(" lines/s") != std::string::npos);

    const std::string json = rollguard::agent::renderReplayJson(result);
    INFO(json);
    CHECK(json.find(R"("name":"app")") != std::string::npos);
    CHECK(json.find(R"("lines":10012)") != std::string::npos);
    CHECK(json.find(R"("bad_lines":{"total":10,"invalid_json":3,"not_an_object":2,"bad_latency":4,"too_long":1,"invalid_utf8":0,"bad_timestamp":0})") !=
          std::string::npos);
    CHECK(json.find(R"("events":10000,"errors":200,"error_ratio":0.02)") != std::string::npos);
    CHECK(json.find(R"("lines_per_second":)") != std::string::npos);
}

TEST_CASE("replay progress lines", "[replay]") {
    ReplayProgress p;
    p.source = "app";
    p.sources = 1;
    p.bytes_read = 250'000'000;
    p.bytes_total = 1'000'000'000;
    p.lines = 1'000'000;
    p.seconds = 0.5;
    CHECK(rollguard::agent::formatReplayProgress(p) ==
          "replay app: 250.0 MB / 1.00 GB (25%), 1000000 lines, 2000000 lines/s");
    p.sources = 3;
    p.source_index = 1;
    CHECK(rollguard::agent::formatReplayProgress(p).rfind("replay 2/3 app: ", 0) == 0);
}
