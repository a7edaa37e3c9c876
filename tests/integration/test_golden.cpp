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
