// Scenario test of the RepTate modernization guide (docs/guides/reptate.md): the real
// binary runs the SHIPPED config/examples/reptate.toml unchanged, with its paths pointed
// at a temp dir through the environment and its timings divided by --time-scale 120
// ("5m" plays in 2.5 s, "1h" in 30 s, the 10-minute baselines are learned in 5 s). The
// service is played by this test: it appends MigrationDashboard events to a JSON-lines
// log, runs rollguard-prochog as the process whose pid file the config names, and
// receives the PagerDuty events on a loopback HttpReceiver.
//
// Cases: the error-rate critical end to end after a near-miss just under the threshold
// (flag file and env file exact content, PagerDuty body, incident record); the dual-run
// assertion count (100 does not trigger, the 101st does); memory above 2x its learned
// baseline (prochog grows its RSS on SIGUSR1). ROLLGUARD_KEEP_TEST_DIRS=1 keeps the temp
// dir, with the agent's log in rollguard.stderr.

#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <simdjson.h>

#include "agent_status.h"
#include "http_client.h"
#include "http_receiver.h"
#include "process.h"
#include "running_agent.h"
#include "temp_dir.h"
#include "ticker.h"

using namespace rollguard::testing;
using namespace std::chrono_literals;

namespace {

constexpr const char* kConfig = ROLLGUARD_SOURCE_DIR "/config/examples/reptate.toml";
constexpr const char* kRoutingKey = "R0UT1NGKEY0123456789abcdef012345";

// The FEATURE_FLAGS dict of the guide as the JSON file the service reads, written the
// way a person would; rollguard rewrites it pretty-printed (2 spaces), keeping key order.
const std::string kFlagsBefore =
    "{\n"
    "  \"USE_SAFE_EVAL\": {\"default\": false, \"enabled_percentage\": 25, \"description\": \"Use safe expression evaluator\"},\n"
    "  \"USE_SAFE_SERIALIZATION\": {\"default\": false, \"enabled_percentage\": 25, \"description\": \"Use JSON/NPZ instead of pickle\"},\n"
    "  \"USE_JAX_OPTIMIZATION\": {\"default\": false, \"enabled_percentage\": 25, \"description\": \"Use JAX-based optimization\"}\n"
    "}\n";

const std::string kFlagsAfter =
    "{\n"
    "  \"USE_SAFE_EVAL\": {\n"
    "    \"default\": false,\n"
    "    \"enabled_percentage\": 0,\n"
    "    \"description\": \"Use safe expression evaluator\"\n"
    "  },\n"
    "  \"USE_SAFE_SERIALIZATION\": {\n"
    "    \"default\": false,\n"
    "    \"enabled_percentage\": 0,\n"
    "    \"description\": \"Use JSON/NPZ instead of pickle\"\n"
    "  },\n"
    "  \"USE_JAX_OPTIMIZATION\": {\n"
    "    \"default\": false,\n"
    "    \"enabled_percentage\": 0,\n"
    "    \"description\": \"Use JAX-based optimization\"\n"
    "  }\n"
    "}\n";

const std::string kEnvBefore =
    "# RepTate service environment (EnvironmentFile= of reptate.service)\n"
    "REPTATE_DATA_DIR=/srv/reptate/data\n"
    "REPTATE_ROLLBACK_PHASE=2\n"
    "\n"
    "# JAX\n"
    "XLA_PYTHON_CLIENT_PREALLOCATE=false\n";

const std::string kEnvAfter =
    "# RepTate service environment (EnvironmentFile= of reptate.service)\n"
    "REPTATE_DATA_DIR=/srv/reptate/data\n"
    "REPTATE_ROLLBACK_PHASE=0\n"
    "\n"
    "# JAX\n"
    "XLA_PYTHON_CLIENT_PREALLOCATE=false\n";

std::string successLine(int i) {
    // durations 0.100 ... 0.190 s
    return "{\"timestamp\":\"2026-12-01T10:00:00.000Z\",\"component\":\"jax_optimization\",\"event_type\":\"success\","
           "\"duration\":" + std::to_string(0.1 + 0.01 * (i % 10)) +
           ",\"metadata\":{\"user_id\":\"u" + std::to_string(i % 97) +
           "\",\"data_size\":4096,\"feature_flag_enabled\":true}}\n";
}

std::string failureLine() {
    return "{\"timestamp\":\"2026-12-01T10:00:00.000Z\",\"component\":\"jax_optimization\",\"event_type\":\"failure\","
           "\"duration\":0.050,\"metadata\":{\"error\":\"FloatingPointError: overflow in exp\","
           "\"traceback\":\"Traceback (most recent call last): ...\"}}\n";
}

std::string fallbackLine() {
    return "{\"timestamp\":\"2026-12-01T10:00:00.000Z\",\"component\":\"jax_optimization\",\"event_type\":\"fallback\","
           "\"metadata\":{\"reason\":\"legacy_compatibility\"}}\n";
}

std::string assertionLine(int i) {
    return "{\"timestamp\":\"2026-12-01T10:00:00.000Z\",\"component\":\"optimization\",\"event_type\":\"assertion_failure\","
           "\"metadata\":{\"function\":\"optimize_polymer_chain\",\"max_abs_diff\":0.00" + std::to_string(10 + i % 80) +
           "}}\n";
}

/// The service's traffic: about 80 executions a second appended to the log by a thread,
/// every `errors_every`-th one a failure (0: none), and a fallback every 10 executions.
/// The failures are spread evenly, so every window of 50 or more executions has an error
/// ratio within a few points of 1/errors_every.
class Workload {
public:
    explicit Workload(std::filesystem::path log) : log_(std::move(log)) {
        ticker_.emplace(50ms, [this] { step(); });
    }
    void setErrorsEvery(int n) { errors_every_ = n; }

private:
    void step() {
        std::string batch;
        for (int k = 0; k < 4; ++k, ++i_) {
            const int every = errors_every_.load();
            batch += every > 0 && i_ % every == 0 ? failureLine() : successLine(i_);
            if (i_ % 10 == 9) {
                batch += fallbackLine();
            }
        }
        appendFile(log_, batch);
    }

    std::filesystem::path log_;
    std::atomic<int> errors_every_{0};
    int i_ = 0;  // lines written; the ticker's alone
    std::optional<Ticker> ticker_;  // last: stopped first
};

/// rollguard-prochog as the RepTate process, its pid in `pid_file`.
struct Service {
    Service(const TempDir& dir, std::vector<std::string> args)
        : out(dir / "prochog.out"),
          process(withBinary(std::move(args)), out.string(), (dir / "prochog.err").string()) {}

    static std::vector<std::string> withBinary(std::vector<std::string> args) {
        args.insert(args.begin(), ROLLGUARD_PROCHOG_BIN);
        return args;
    }
    bool ready() {
        return eventually([&] { return readFile(out).find("ready") != std::string::npos; }, 30s);
    }

    std::filesystem::path out;
    Process process;
};


/// The one incident record in `<state>/incidents/`, once it is complete.
std::optional<std::string> completeIncident(const std::filesystem::path& state) {
    const auto dir = state / "incidents";
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
        return std::nullopt;
    }
    // Polled while the agent writes the record (temp file, then rename over it): a listing
    // or a read that catches it in between yields nullopt, and the next poll looks again.
    std::vector<std::filesystem::path> records;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        if (it->path().extension() == ".json") {
            records.push_back(it->path());
        }
    }
    if (ec || records.size() != 1) {
        return std::nullopt;
    }
    std::string text;
    try {
        text = readFile(records.front());
    } catch (const std::exception&) {
        return std::nullopt;
    }
    if (text.find("\"complete\":true") == std::string::npos) {
        return std::nullopt;
    }
    return text;
}

/// Everything a case needs: the files the config names, a receiver for PagerDuty, the
/// service process, and the environment that points the shipped config at them.
struct Scenario {
    TempDir dir;
    HttpReceiver pagerduty;
    ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    std::uint16_t port = reserved.port();

    Scenario() {
        std::filesystem::create_directories(dir / "logs");
        writeFile(dir / "logs" / "reptate.jsonl", "");
        writeFile(dir / "feature_flags.json", kFlagsBefore);
        writeFile(dir / "reptate.env", kEnvBefore);
    }

    std::vector<std::pair<std::string, std::string>> env() const {
        return {{"ROLLGUARD_STATE_DIR", (dir / "state").string()},
                {"ROLLGUARD_LISTEN", "127.0.0.1:" + std::to_string(port)},
                {"REPTATE_LOG_DIR", (dir / "logs").string()},
                {"REPTATE_PID_FILE", (dir / "reptate.pid").string()},
                {"REPTATE_FEATURE_FLAGS_FILE", (dir / "feature_flags.json").string()},
                {"REPTATE_ENV_FILE", (dir / "reptate.env").string()},
                {"REPTATE_PAGERDUTY_URL", pagerduty.url("/v2/enqueue")},
                {"REPTATE_PAGERDUTY_ROUTING_KEY", kRoutingKey}};
    }

    void writePid(const Service& service) { writeFile(dir / "reptate.pid", std::to_string(service.process.pid()) + "\n"); }

    std::filesystem::path log() const { return dir / "logs" / "reptate.jsonl"; }
    std::string flags() const { return readFile(dir / "feature_flags.json"); }
    std::string envFile() const { return readFile(dir / "reptate.env"); }
    bool untouched() const { return flags() == kFlagsBefore && envFile() == kEnvBefore && pagerduty.requests().empty(); }
};

/// Checks the rollback of `rule`: both files exactly as the runbook wants them, one
/// PagerDuty trigger, one complete incident record naming the rule.
void checkRolledBack(Scenario& s, const std::string& rule) {
    // The record is complete once the three hooks have run.
    std::optional<std::string> record;
    REQUIRE(eventually([&] { return (record = completeIncident(s.dir / "state")).has_value(); }, 20s));
    CHECK(s.flags() == kFlagsAfter);
    CHECK(s.envFile() == kEnvAfter);

    REQUIRE(s.pagerduty.waitForRequests(1, 20s));
    const auto requests = s.pagerduty.requests();
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].target == "/v2/enqueue");
    simdjson::dom::parser parser;
    simdjson::dom::element body;
    REQUIRE(parser.parse(requests[0].body).get(body) == simdjson::SUCCESS);
    CHECK(std::string_view(body["routing_key"]) == kRoutingKey);
    CHECK(std::string_view(body["event_action"]) == "trigger");
    CHECK(std::string_view(body["payload"]["severity"]) == "critical");
    CHECK(std::string_view(body["payload"]["component"]) == (rule == "reptate-memory-critical" ? "reptate-proc.rss_bytes" : "reptate"));
    CHECK(std::string_view(body["payload"]["custom_details"]["rule"]) == rule);
    const std::string dedup_key{std::string_view(body["dedup_key"])};

    simdjson::dom::parser record_parser;
    simdjson::dom::element incident;
    REQUIRE(record_parser.parse(*record).get(incident) == simdjson::SUCCESS);
    CHECK(std::string_view(incident["id"]) == dedup_key);
    CHECK(std::string_view(incident["kind"]) == "rule");
    CHECK(std::string_view(incident["event"]["rule"]) == rule);
    CHECK(std::string_view(incident["event"]["severity"]) == "critical");
    std::vector<std::string> hooks;
    for (simdjson::dom::element h : incident["hooks"].get_array()) {
        hooks.emplace_back(std::string_view(h["hook"]));
        CHECK(std::string_view(h["status"]) == "ok");
    }
    CHECK(hooks == std::vector<std::string>{"flags-to-zero", "rollback-phase", "page"});
}

}  // namespace

TEST_CASE("RepTate guide: error rate over 5 percent for 5 minutes rolls back, 2.5 percent does not", "[guide][integration]") {
    Scenario s;
    Service service(s.dir, {"--rss-mb", "8"});
    REQUIRE(service.ready());
    s.writePid(service);
    Workload workload(s.log());
    RunningAgent agent(kConfig, {"--time-scale", "120"}, s.env(), s.dir.path());
    REQUIRE(agent.waitHealthy(s.port, 30s));

    // Healthy traffic: the rule sees it, nothing happens.
    const std::string rule = "reptate-error-rate-critical";
    REQUIRE(eventually([&] {
        const auto r = agentStatus(s.port, rule).rule;
        return r && r->samples >= 50 && r->value == 0.0;
    }, 30s));
    REQUIRE(evaluationsPass(s.port, 3));
    CHECK(s.untouched());

    // Near-miss: 1 execution in 40 fails (2.5 %, never 5 % in any window of 50 or more)
    // for more than twice the scaled `for` (2.5 s): under the threshold, no rollback.
    workload.setErrorsEvery(40);
    REQUIRE(eventually([&] {
        const auto r = agentStatus(s.port, rule).rule;
        return r && r->value && *r->value >= 0.015;
    }, 30s));
    REQUIRE(evaluationsPass(s.port, 6));
    const auto near_miss = agentStatus(s.port, rule).rule;
    REQUIRE(near_miss);
    CHECK(near_miss->state == "inactive");
    CHECK(*near_miss->value < 0.05);
    CHECK(s.untouched());

    // 1 in 5 fails: above 5 % for the whole (scaled) 5 minutes: the rollback.
    workload.setErrorsEvery(5);
    REQUIRE(eventually([&] { return s.flags() != kFlagsBefore; }, 30s));
    checkRolledBack(s, rule);

    agent.process().signal(SIGTERM);
    CHECK(agent.process().wait(15s) == 0);
}

TEST_CASE("RepTate guide: the 101st dual-run assertion failure in an hour rolls back, 100 do not", "[guide][integration]") {
    Scenario s;
    Service service(s.dir, {"--rss-mb", "8"});
    REQUIRE(service.ready());
    s.writePid(service);
    Workload workload(s.log());
    RunningAgent agent(kConfig, {"--time-scale", "120"}, s.env(), s.dir.path());
    REQUIRE(agent.waitHealthy(s.port, 30s));

    // 100 assertion failures at once: the (scaled) hour holds exactly 100, not > 100.
    const std::string rule = "reptate-dual-run-assertions";
    std::string hundred;
    for (int i = 0; i < 100; ++i) {
        hundred += assertionLine(i);
    }
    appendFile(s.log(), hundred);
    REQUIRE(eventually([&] {
        const auto r = agentStatus(s.port, rule).rule;
        return r && r->value == 100.0;
    }, 30s));
    REQUIRE(evaluationsPass(s.port, 3));
    const auto near_miss = agentStatus(s.port, rule).rule;
    REQUIRE(near_miss);
    CHECK(near_miss->state == "inactive");
    CHECK(near_miss->value == 100.0);  // still inside the 30 s (scaled 1 h) window
    CHECK(s.untouched());

    // The 101st: "Assertion failures > 100" -> rollback.
    appendFile(s.log(), assertionLine(100));
    REQUIRE(eventually([&] { return s.flags() != kFlagsBefore; }, 30s));
    checkRolledBack(s, rule);
    simdjson::dom::parser parser;
    simdjson::dom::element body;
    REQUIRE(parser.parse(s.pagerduty.requests().at(0).body).get(body) == simdjson::SUCCESS);
    CHECK(double(body["payload"]["custom_details"]["value"]) == 101.0);

    agent.process().signal(SIGTERM);
    CHECK(agent.process().wait(15s) == 0);
}

TEST_CASE("RepTate guide: memory above twice its learned baseline rolls back", "[guide][integration]") {
    Scenario s;
    Service service(s.dir, {"--rss-mb", "16", "--grow-mb", "64"});
    REQUIRE(service.ready());
    s.writePid(service);
    Workload workload(s.log());
    RunningAgent agent(kConfig, {"--time-scale", "120"}, s.env(), s.dir.path());
    REQUIRE(agent.waitHealthy(s.port, 30s));

    // The baseline is learned over the (scaled) first 10 minutes; then the threshold is
    // twice the RSS seen, and the steady process is under it.
    const std::string rule = "reptate-memory-critical";
    std::optional<RuleView> learned;
    REQUIRE(eventually([&] {
        learned = agentStatus(s.port, rule).rule;
        return learned && learned->threshold && learned->value;
    }, 30s));
    CHECK(*learned->threshold == Approx(2.0 * *learned->value).epsilon(0.2));
    CHECK(learned->state == "inactive");
    CHECK(s.untouched());

    // A leak: 64 MB more than the ~20 MB it had.
    service.process.signal(SIGUSR1);
    REQUIRE(eventually([&] { return readFile(service.out).find("grown 80") != std::string::npos; }, 30s));
    REQUIRE(eventually([&] { return s.flags() != kFlagsBefore; }, 30s));
    checkRolledBack(s, rule);

    agent.process().signal(SIGTERM);
    CHECK(agent.process().wait(15s) == 0);
}
