// Rollout guide 5, the Genesis agent orchestrator: the shipped
// config/examples/agent-orchestrator.toml, unchanged, run by the real binary at 60x
// speed (a 5-minute window plays in 5 s) against a /metrics endpoint of ours. Healthy
// traffic and near-misses change nothing; an error ratio above 1% and then a p95 above
// 500 ms each turn Phase 4 off in feature_flags.json and append one rollback entry to
// deployment_state.json's history.

#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "http_receiver.h"
#include "process.h"
#include "running_agent.h"
#include "temp_dir.h"
#include "ticker.h"

using namespace rollguard::testing;
using namespace std::chrono_literals;

namespace {

/// What the orchestrator's traffic looks like, per 100 ms.
struct Traffic {
    double requests = 0;  ///< requests per 100 ms
    double errors = 0;    ///< fraction of them that fail
    double warm = 0;      ///< fraction answered in (0.1 s, 0.25 s]
    double slow = 0;      ///< fraction answered in (0.5 s, 1 s]; the rest within 50 ms
};

/// Serves genesis_requests_total, genesis_errors_total and the
/// genesis_request_duration_seconds histogram on a loopback /metrics, the counters
/// growing every 100 ms by the current Traffic. Thread-safety: setTraffic from any thread.
class GenesisMetrics {
public:
    GenesisMetrics() {
        render();
        ticker_.emplace(100ms, [this] { step(); });
    }
    GenesisMetrics(const GenesisMetrics&) = delete;
    GenesisMetrics& operator=(const GenesisMetrics&) = delete;

    void setTraffic(Traffic traffic) {
        std::lock_guard lock(mutex_);
        traffic_ = traffic;
    }
    std::string url() const { return server_.url("/metrics"); }
    std::size_t scrapes() const { return server_.requests().size(); }
    /// Waits until `n` more scrapes than now were served: more than a scaled 5-minute
    /// window (250 ms each) passes for n = 30, however loaded the machine.
    bool waitScrapes(std::size_t n) const { return server_.waitForRequests(scrapes() + n, 60s); }

private:
    void step() {
        std::lock_guard lock(mutex_);
        requests_ += traffic_.requests;
        errors_ += traffic_.requests * traffic_.errors;
        warm_ += traffic_.requests * traffic_.warm;
        slow_ += traffic_.requests * traffic_.slow;
        render();
    }

    // Called with mutex_ held (or before the thread starts).
    void render() {
        const auto n = [](double v) { return std::to_string(static_cast<long long>(std::floor(v))); };
        const double fast = requests_ - warm_ - slow_;
        std::string body =
            "# TYPE genesis_requests_total counter\n"
            "genesis_requests_total " + n(requests_) + "\n"
            "# TYPE genesis_errors_total counter\n"
            "genesis_errors_total " + n(errors_) + "\n"
            "# TYPE genesis_request_duration_seconds histogram\n";
        const std::vector<std::pair<std::string, double>> buckets{
            {"0.05", fast}, {"0.1", fast}, {"0.25", fast + warm_}, {"0.5", fast + warm_},
            {"1", requests_}, {"2.5", requests_}, {"+Inf", requests_}};
        for (const auto& [le, count] : buckets) {
            body += "genesis_request_duration_seconds_bucket{le=\"" + le + "\"} " + n(count) + "\n";
        }
        body += "genesis_request_duration_seconds_sum " + std::to_string(fast * 0.02 + warm_ * 0.2 + slow_ * 0.8) +
                "\n"
                "genesis_request_duration_seconds_count " + n(requests_) + "\n";
        server_.setBody(std::move(body), {{"Content-Type", "text/plain; version=0.0.4"}});
    }

    HttpReceiver server_;
    std::mutex mutex_;
    Traffic traffic_;
    double requests_ = 0;
    double errors_ = 0;
    double warm_ = 0;
    double slow_ = 0;
    std::optional<Ticker> ticker_;  // last: stopped first
};

const std::string kFlags =
    "{\n"
    "  \"version\": \"1.0.0\",\n"
    "  \"flags\": {\n"
    "    \"orchestration_enabled\": {\n"
    "      \"enabled\": true,\n"
    "      \"rollout_strategy\": \"all_at_once\"\n"
    "    },\n"
    "    \"aatc_system_enabled\": {\n"
    "      \"enabled\": true,\n"
    "      \"rollout_strategy\": \"progressive\",\n"
    "      \"rollout_percentage\": 25.0\n"
    "    },\n"
    "    \"phase_4_deployment\": {\n"
    "      \"enabled\": true,\n"
    "      \"rollout_strategy\": \"progressive\",\n"
    "      \"rollout_percentage\": 25.0\n"
    "    }\n"
    "  }\n"
    "}\n";

const std::string kFlagsRolledBack =
    "{\n"
    "  \"version\": \"1.0.0\",\n"
    "  \"flags\": {\n"
    "    \"orchestration_enabled\": {\n"
    "      \"enabled\": true,\n"
    "      \"rollout_strategy\": \"all_at_once\"\n"
    "    },\n"
    "    \"aatc_system_enabled\": {\n"
    "      \"enabled\": false,\n"
    "      \"rollout_strategy\": \"progressive\",\n"
    "      \"rollout_percentage\": 25.0\n"
    "    },\n"
    "    \"phase_4_deployment\": {\n"
    "      \"enabled\": false,\n"
    "      \"rollout_strategy\": \"progressive\",\n"
    "      \"rollout_percentage\": 25.0\n"
    "    }\n"
    "  }\n"
    "}\n";

const std::string kStateHistory =
    "  \"history\": [\n"
    "    {\n"
    "      \"event\": \"step\",\n"
    "      \"percentage\": 5,\n"
    "      \"at\": \"2025-10-18T09:00:00Z\"\n"
    "    },\n"
    "    {\n"
    "      \"event\": \"step\",\n"
    "      \"percentage\": 25,\n"
    "      \"at\": \"2025-10-20T09:00:00Z\"\n"
    "    }";

std::string stateText(int percentage, const std::string& new_entries) {
    return "{\n"
           "  \"strategy\": \"safe\",\n"
           "  \"current_percentage\": " + std::to_string(percentage) + ",\n"
           "  \"started_at\": \"2025-10-18T09:00:00Z\",\n" +
           kStateHistory + new_entries + "\n  ]\n}\n";
}

/// The history entry the record-rollback hook appends, as the file shows it.
struct Entry {
    std::string rule, at, incident, reason;  // literals as written, escapes kept
    std::string text() const {
        return ",\n"
               "    {\n"
               "      \"event\": \"rollback\",\n"
               "      \"rule\": \"" + rule + "\",\n"
               "      \"at\": \"" + at + "\",\n"
               "      \"incident\": \"" + incident + "\",\n"
               "      \"reason\": \"" + reason + "\"\n"
               "    }";
    }
};

/// The string literal of `"key": "..."` on the first line at or after `from`, without
/// its quotes ("" when absent).
std::string literalAfter(const std::string& text, const std::string& key, std::size_t from) {
    const std::string start = "\"" + key + "\": \"";
    const auto at = text.find(start, from);
    if (at == std::string::npos) {
        return {};
    }
    const auto begin = at + start.size();
    auto end = text.find('\n', begin);
    end = text[end - 1] == ',' ? end - 2 : end - 1;  // before `",` or `"`
    return text.substr(begin, end - begin);
}

/// The rollback entry of `rule` in `state`, read back from the file.
Entry entryOf(const std::string& state, const std::string& rule) {
    const auto at = state.find("\"rule\": \"" + rule + "\"");
    if (at == std::string::npos) {
        return {};
    }
    return Entry{rule, literalAfter(state, "at", at), literalAfter(state, "incident", at),
                 literalAfter(state, "reason", at)};
}

bool isRfc3339Utc(const std::string& s) {
    // 2026-12-01T14:00:00Z or with a fraction: digits where digits go, 'T', 'Z' at the end.
    if (s.size() < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s.back() != 'Z') {
        return false;
    }
    return std::isdigit(static_cast<unsigned char>(s[0])) && std::isdigit(static_cast<unsigned char>(s[18]));
}

std::size_t countOf(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
        ++n;
    }
    return n;
}

/// The shipped config, unchanged, reached through a symlink in `dir` so that the agent's
/// stdout and stderr (written next to the config) stay out of the source tree.
std::filesystem::path shippedConfig(const TempDir& dir) {
    const auto link = dir / "agent-orchestrator.toml";
    std::filesystem::create_symlink(ROLLGUARD_SOURCE_DIR "/config/examples/agent-orchestrator.toml", link);
    return link;
}

std::vector<std::pair<std::string, std::string>> agentEnv(const TempDir& dir, const GenesisMetrics& metrics,
                                                           std::uint16_t port) {
    return {{"GENESIS_METRICS_URL", metrics.url()},
            {"GENESIS_CONFIG_DIR", (dir / "config").string()},
            {"ROLLGUARD_STATE_DIR", (dir / "state").string()},
            {"ROLLGUARD_LISTEN", "127.0.0.1:" + std::to_string(port)}};
}

constexpr std::size_t kWindowOfScrapes = 30;  // 30 x 250 ms > the scaled 5 s window

}  // namespace

TEST_CASE("guide agent-orchestrator: error ratio then p95 each roll Phase 4 back and record one history entry",
          "[guide][integration]") {
    TempDir dir;
    std::filesystem::create_directories(dir / "config");
    const auto flags = dir / "config" / "feature_flags.json";
    const auto state = dir / "config" / "deployment_state.json";
    writeFile(flags, kFlags);
    writeFile(state, stateText(25, ""));

    GenesisMetrics metrics;
    metrics.setTraffic({20, 0.0, 0.02, 0.0});  // 200 requests/s, no errors, p95 within 50 ms
    const ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    const std::uint16_t port = reserved.port();
    RunningAgent agent(shippedConfig(dir), {"--time-scale", "60"}, agentEnv(dir, metrics, port));
    REQUIRE(agent.waitHealthy(port, 15s));
    INFO(agent.stderrText());

    // Healthy for more than a window: nothing happens.
    REQUIRE(metrics.waitScrapes(kWindowOfScrapes));
    CHECK(readFile(flags) == kFlags);
    CHECK(readFile(state) == stateText(25, ""));

    // Near-miss under the thresholds: 0.5% errors (1% is the line) and p95 in the
    // 100-250 ms bucket (500 ms is the line), for more than a window.
    metrics.setTraffic({20, 0.005, 0.10, 0.0});
    REQUIRE(metrics.waitScrapes(kWindowOfScrapes));
    REQUIRE(agent.running());
    CHECK(readFile(flags) == kFlags);
    CHECK(readFile(state) == stateText(25, ""));

    // 5% errors: the error-ratio rule rolls back.
    metrics.setTraffic({20, 0.05, 0.10, 0.0});
    REQUIRE(eventually([&] { return readFile(state).find("genesis-error-ratio") != std::string::npos; }, 20s));
    CHECK(readFile(flags) == kFlagsRolledBack);
    const std::string after_errors = readFile(state);
    const Entry first = entryOf(after_errors, "genesis-error-ratio");
    CHECK(after_errors == stateText(0, first.text()));
    CHECK(isRfc3339Utc(first.at));
    CHECK(first.reason.find("error_ratio") != std::string::npos);
    REQUIRE(first.incident.size() == 16);
    CHECK(std::filesystem::exists(dir / "state" / "incidents" / (first.incident + ".json")));

    // Errors gone, 20% of requests in 0.5-1 s: p95 ~ 0.9 s. The p95 rule is a second
    // incident: the flags are already off, the history gains a second entry.
    metrics.setTraffic({20, 0.0, 0.0, 0.20});
    REQUIRE(eventually([&] { return readFile(state).find("genesis-p95-latency") != std::string::npos; }, 20s));
    const std::string after_latency = readFile(state);
    const Entry second = entryOf(after_latency, "genesis-p95-latency");
    CHECK(after_latency == stateText(0, first.text() + second.text()));
    CHECK(second.reason.find("p95") != std::string::npos);
    REQUIRE(second.incident.size() == 16);
    CHECK(second.incident != first.incident);
    CHECK(std::filesystem::exists(dir / "state" / "incidents" / (second.incident + ".json")));
    CHECK(readFile(flags) == kFlagsRolledBack);

    // Both rules stay latched: more bad traffic records nothing more.
    metrics.setTraffic({20, 0.05, 0.0, 0.20});
    REQUIRE(metrics.waitScrapes(8));
    CHECK(readFile(state) == after_latency);
    CHECK(agent.running());
}

TEST_CASE("guide agent-orchestrator: too little traffic to judge rolls nothing back, enough of it does",
          "[guide][integration]") {
    TempDir dir;
    std::filesystem::create_directories(dir / "config");
    const auto flags = dir / "config" / "feature_flags.json";
    const auto state = dir / "config" / "deployment_state.json";
    writeFile(flags, kFlags);
    writeFile(state, stateText(25, ""));

    // 10 requests/s: about 50 in a window, under min_samples = 100, although half of
    // them fail and all take 0.5-1 s.
    GenesisMetrics metrics;
    metrics.setTraffic({1, 0.5, 0.0, 1.0});
    const ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    const std::uint16_t port = reserved.port();
    RunningAgent agent(shippedConfig(dir), {"--time-scale", "60"}, agentEnv(dir, metrics, port));
    REQUIRE(agent.waitHealthy(port, 15s));
    INFO(agent.stderrText());
    REQUIRE(metrics.waitScrapes(kWindowOfScrapes));
    REQUIRE(agent.running());
    CHECK(readFile(flags) == kFlags);
    CHECK(readFile(state) == stateText(25, ""));

    // The same traffic at 200 requests/s is enough to judge: both rules roll back, each
    // recorded once.
    metrics.setTraffic({20, 0.5, 0.0, 1.0});
    REQUIRE(eventually(
        [&] {
            const auto s = readFile(state);
            return s.find("genesis-error-ratio") != std::string::npos && s.find("genesis-p95-latency") != std::string::npos;
        },
        20s));
    CHECK(readFile(flags) == kFlagsRolledBack);
    const std::string after = readFile(state);
    CHECK(countOf(after, "\"event\": \"rollback\"") == 2);
    CHECK(countOf(after, "genesis-error-ratio") == 1);
    CHECK(countOf(after, "genesis-p95-latency") == 1);
    CHECK(after.find("\"current_percentage\": 0,") != std::string::npos);
}
