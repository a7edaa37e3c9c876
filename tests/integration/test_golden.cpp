// Golden timelines: every shipped config replayed on a reproducible generated log gives
// the checked-in rule timeline, tick for tick. A change in judgement shows up here as a
// readable diff. To accept a deliberate change: ROLLGUARD_UPDATE_GOLDEN=1 ctest -R golden.

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "process.h"
#include "temp_dir.h"

using namespace rollguard::testing;

namespace {

struct Golden {
    const char* config;  // relative to the source tree
    const char* name;    // tests/golden/<name>.timeline.txt
    std::vector<std::string> loggen_args;
};

std::string readText(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

/// The replay report from its timeline on (the figures before it carry timings).
std::string timelineOf(const std::string& report) {
    const auto at = report.find("rule timeline");
    return at == std::string::npos ? std::string() : report.substr(at);
}

}  // namespace

TEST_CASE("golden timelines: every shipped config on a reproducible log", "[golden][integration]") {
    const std::vector<Golden> goldens = {
        // 1 min healthy, 1 min degraded (latency x4, 8% 5xx) at 200 lines/s.
        {"config/demo.toml", "demo", {"--rate", "200", "--healthy", "60", "--degraded", "60"}},
        // The 5-minute error-ratio window crosses 5% a while into a 10% error phase.
        {"config/examples/minimal.toml",
         "minimal",
         {"--rate", "50", "--healthy", "300", "--degraded", "300", "--error-ratio", "0.10"}},
    };
    const bool update = std::getenv("ROLLGUARD_UPDATE_GOLDEN") != nullptr;
    TempDir dir;
    for (const auto& g : goldens) {
        INFO(g.config);
        const std::string log = (dir / (std::string(g.name) + ".log")).string();
        std::vector<std::string> gen = {ROLLGUARD_LOGGEN_BIN, "-o", log, "--no-sleep", "--seed", "11",
                                        "--start", "2026-01-01T00:00:00Z"};
        gen.insert(gen.end(), g.loggen_args.begin(), g.loggen_args.end());
        REQUIRE(runCommand(gen).first == 0);

        const auto [code, out] =
            runCommand({ROLLGUARD_BIN, "replay", "--config", std::string(ROLLGUARD_SOURCE_DIR "/") + g.config, log});
        INFO(out);
        REQUIRE(code == 0);
        const std::string got = timelineOf(out);
        REQUIRE_FALSE(got.empty());
        const std::string golden_path = std::string(ROLLGUARD_SOURCE_DIR "/tests/golden/") + g.name + ".timeline.txt";
        if (update) {
            std::ofstream(golden_path, std::ios::binary | std::ios::trunc) << got;
        }
        const std::string want = readText(golden_path);
        INFO("golden file: " << golden_path << " (ROLLGUARD_UPDATE_GOLDEN=1 rewrites it)");
        CHECK(got == want);
    }
}

TEST_CASE("rollguard replay --html writes the timeline page - --from/--to bound the timeline", "[golden][integration]") {
    TempDir dir;
    const std::string log = (dir / "demo.log").string();
    REQUIRE(runCommand({ROLLGUARD_LOGGEN_BIN, "-o", log, "--no-sleep", "--seed", "11", "--start",
                        "2026-01-01T00:00:00Z", "--rate", "200", "--healthy", "60", "--degraded", "60"})
                .first == 0);
    const std::string config = ROLLGUARD_SOURCE_DIR "/config/demo.toml";
    const std::string html = (dir / "timeline.html").string();
    auto [code, out] = runCommand({ROLLGUARD_BIN, "replay", "--config", config, "--html", html, log});
    INFO(out);
    REQUIRE(code == 0);
    const std::string page = readText(html);
    CHECK(page.rfind("<!DOCTYPE html>", 0) == 0);
    CHECK(page.find("<script") == std::string::npos);
    CHECK(page.find("<svg ") != std::string::npos);
    // One chart per rule of the config, with its firing period and the hooks it would run.
    std::size_t charts = 0;
    for (auto at = page.find("<svg "); at != std::string::npos; at = page.find("<svg ", at + 1)) {
        ++charts;
    }
    CHECK(charts == 2);
    CHECK(page.find("class=\"firing\"") != std::string::npos);
    CHECK(page.find("hooks: disable-new-router, page-on-call, rollback-script</text>") != std::string::npos);

    // A timeline from 00:01:30: the windows are warm and the rules are firing from its
    // first tick, which it says; up to 00:00:30: nothing happens yet.
    std::tie(code, out) = runCommand({ROLLGUARD_BIN, "replay", "--config", config, "--from", "2026-01-01T00:01:30Z", log});
    INFO(out);
    CHECK(code == 0);
    CHECK(out.find("rule timeline 2026-01-01T00:01:30.000Z .. 2026-01-01T00:02:00.000Z\n") != std::string::npos);
    CHECK(out.find("2026-01-01T00:01:30.000Z  firing -> firing  error_ratio=") != std::string::npos);
    CHECK(out.find("(already firing when the timeline starts (since 2026-01-01T00:01:06.000Z))") != std::string::npos);
    CHECK(out.find("never breached") == std::string::npos);
    std::tie(code, out) = runCommand({ROLLGUARD_BIN, "replay", "--config", config, "--to", "2026-01-01T00:00:30Z", log});
    INFO(out);
    CHECK(code == 0);
    CHECK(out.find("rule timeline 2026-01-01T00:00:00.500Z .. 2026-01-01T00:00:30.000Z\n") != std::string::npos);
    CHECK(out.find("never breached") != std::string::npos);
    CHECK(out.find("-> firing") == std::string::npos);

    std::tie(code, out) = runCommand({ROLLGUARD_BIN, "replay", "--config", config, "--from", "yesterday", log});
    CHECK(code == 2);
    CHECK(out.find("'yesterday' is not an RFC 3339 time") != std::string::npos);
}
