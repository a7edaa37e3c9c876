// End to end: the real rollguard binary on a real log file, a real webhook receiver on
// 127.0.0.1, a real script. Short window/for values keep it to a few seconds.

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <simdjson.h>

#include "http_receiver.h"
#include "process.h"
#include "running_agent.h"
#include "temp_dir.h"

using namespace rollguard::testing;
using namespace std::chrono_literals;

namespace {

const std::string kEnvBefore =
    "# router settings, managed by the deploy pipeline\n"
    "export LOG_FORMAT=json\n"
    "\n"
    "NEW_ROUTER_ENABLED=1\n"
    "ROUTER_WORKERS=8  \n"
    "# keep this comment\n"
    "GREETING=\"hello world\"\n";

const std::string kEnvAfter =
    "# router settings, managed by the deploy pipeline\n"
    "export LOG_FORMAT=json\n"
    "\n"
    "NEW_ROUTER_ENABLED=0\n"
    "ROUTER_WORKERS=8  \n"
    "# keep this comment\n"
    "GREETING=\"hello world\"\n";

std::string line(int status, double ms) {
    return "{\"ts\":\"2026-11-23T10:00:00Z\",\"method\":\"GET\",\"route\":\"/api/orders\",\"status\":" +
           std::to_string(status) + ",\"duration_ms\":" + std::to_string(ms) + ",\"variant\":\"canary\"}\n";
}

std::string batch(int n, int errors_every, double ms) {
    std::string out;
    for (int i = 0; i < n; ++i) {
        const bool error = errors_every > 0 && i % errors_every == 0;
        out += line(error ? 503 : 200, ms + (i % 7));
    }
    return out;
}

std::string configText(const TempDir& dir, std::uint16_t port) {
    const auto d = dir.path().string();
    const auto url = "http://127.0.0.1:" + std::to_string(port);
    return "[agent]\n"
           "tick = \"100ms\"\n"
           "listen = \"127.0.0.1:0\"\n"
           "hostname = \"e2e-host\"\n"
           "\n"
           "[[source]]\n"
           "name = \"router\"\n"
           "type = \"json_log\"\n"
           "paths = [\"" + d + "/logs/*.log\"]\n"
           "read_from = \"beginning\"\n"
           "latency = { field = \"duration_ms\", unit = \"ms\" }\n"
           "error = { field = \"status\", gte = 500 }\n"
           "\n"
           "[[rule]]\n"
           "name = \"router-latency\"\n"
           "severity = \"warning\"\n"
           "source = \"router\"\n"
           "metric = \"p95\"\n"
           "above = \"100ms\"\n"
           "window = \"2s\"\n"
           "for = \"500ms\"\n"
           "min_samples = 20\n"
           "hooks = [\"notify\"]\n"
           "\n"
           "[[rule]]\n"
           "name = \"router-errors\"\n"
           "severity = \"critical\"\n"
           "source = \"router\"\n"
           "metric = \"error_ratio\"\n"
           "above = 0.05\n"
           "window = \"2s\"\n"
           "for = \"1s\"\n"
           "min_samples = 20\n"
           "hooks = [\"disable-router\", \"page\", \"rollback-script\"]\n"
           "\n"
           "[[hook]]\n"
           "name = \"disable-router\"\n"
           "type = \"env_file\"\n"
           "path = \"" + d + "/router.env\"\n"
           "set = { NEW_ROUTER_ENABLED = \"0\" }\n"
           "\n"
           "[[hook]]\n"
           "name = \"page\"\n"
           "type = \"webhook\"\n"
           "url = \"" + url + "/rollback\"\n"
           "retries = 2\n"
           "retry_backoff = \"50ms\"\n"
           "\n"
           "[[hook]]\n"
           "name = \"notify\"\n"
           "type = \"webhook\"\n"
           "url = \"" + url + "/notify\"\n"
           "\n"
           "[[hook]]\n"
           "name = \"rollback-script\"\n"
           "type = \"script\"\n"
           "command = [\"" + d + "/rollback.sh\", \"" + d + "/script.out\", \"two words\"]\n"
           "timeout = \"5s\"\n";
}

std::size_t countTarget(const HttpReceiver& r, const std::string& target) {
    std::size_t n = 0;
    for (const auto& req : r.requests()) {
        n += req.target == target ? 1 : 0;
    }
    return n;
}

}  // namespace

TEST_CASE("a sustained critical breach rolls back once: env file, webhook, script", "[e2e][integration]") {
    TempDir dir;
    HttpReceiver receiver;
    std::filesystem::create_directories(dir / "logs");
    const auto log = dir / "logs" / "access.log";
    writeFile(log, "");
    writeFile(dir / "router.env", kEnvBefore);
    ::chmod((dir / "router.env").c_str(), 0640);
    writeFile(dir / "rollback.sh",
              "#!/bin/sh\n"
              "env | grep '^ROLLGUARD_' | sort > \"$1\"\n"
              "echo \"arg2=$2\" >> \"$1\"\n"
              "echo \"rolled back after $ROLLGUARD_RULE\"\n");
    ::chmod((dir / "rollback.sh").c_str(), 0755);
    writeFile(dir / "rollguard.toml", configText(dir, receiver.port()));

    RunningAgent agent(dir / "rollguard.toml");
    const auto err = agent.stderrPath();

    // Healthy traffic: nothing may fire. The pauses pace the traffic and give a wrong
    // action the chance to show; they cannot fail a correct agent.
    for (int i = 0; i < 10; ++i) {
        appendFile(log, batch(20, 0, 20.0));
        std::this_thread::sleep_for(100ms);
    }
    REQUIRE(agent.running());
    CHECK(readFile(dir / "router.env") == kEnvBefore);
    CHECK(receiver.requests().empty());

    // A bad canary: 1 in 4 requests fails, latency x10, until the rollback lands.
    const bool rolled_back = eventually(
        [&] {
            appendFile(log, batch(20, 4, 200.0));
            return readFile(dir / "router.env") != kEnvBefore && std::filesystem::exists(dir / "script.out") &&
                   countTarget(receiver, "/rollback") >= 1;
        },
        15s);
    INFO(readFile(err));
    REQUIRE(rolled_back);

    // (a) env file: one key changed, every other byte, comment and the mode kept.
    CHECK(readFile(dir / "router.env") == kEnvAfter);
    struct stat st {};
    REQUIRE(::stat((dir / "router.env").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0640);

    // (b) webhook body.
    const auto requests = receiver.requests();
    const ReceivedRequest* rollback = nullptr;
    for (const auto& r : requests) {
        if (r.target == "/rollback") {
            rollback = &r;
        }
    }
    REQUIRE(rollback != nullptr);
    CHECK(rollback->method == "POST");
    CHECK(rollback->header("content-type").find("application/json") != std::string::npos);
    simdjson::dom::parser parser;
    simdjson::dom::element body;
    REQUIRE(parser.parse(rollback->body).get(body) == simdjson::SUCCESS);
    CHECK(std::string_view(body["rule"]) == "router-errors");
    CHECK(std::string_view(body["severity"]) == "critical");
    CHECK(std::string_view(body["state"]) == "firing");
    CHECK(std::string_view(body["metric"]) == "error_ratio");
    CHECK(std::string_view(body["host"]) == "e2e-host");
    CHECK(double(body["threshold"]) == Approx(0.05));
    CHECK(double(body["value"]) > 0.05);
    CHECK(double(body["window_seconds"]) == Approx(2.0));
    CHECK(double(body["for_seconds"]) == Approx(1.0));
    CHECK(int64_t(body["samples"]) >= 20);
    CHECK(!std::string_view(body["since"]).empty());

    // The warning notified through its own hook and did not roll anything back by itself.
    CHECK(countTarget(receiver, "/notify") >= 1);

    // (c) the script ran with argv intact and the breach in its environment.
    REQUIRE(eventually([&] { return readFile(dir / "script.out").find("arg2=two words") != std::string::npos; }, 30s));
    const auto script_out = readFile(dir / "script.out");
    CHECK(script_out.find("ROLLGUARD_RULE=router-errors\n") != std::string::npos);
    CHECK(script_out.find("ROLLGUARD_SEVERITY=critical\n") != std::string::npos);
    CHECK(script_out.find("ROLLGUARD_METRIC=error_ratio\n") != std::string::npos);
    CHECK(script_out.find("ROLLGUARD_THRESHOLD=0.05\n") != std::string::npos);

    // The breach goes on: the rollback is latched and does not run again. (The pauses
    // pace the traffic; a second run would be a bug they give the chance to show.)
    for (int i = 0; i < 15; ++i) {
        appendFile(log, batch(20, 4, 200.0));
        std::this_thread::sleep_for(100ms);
    }
    CHECK(countTarget(receiver, "/rollback") == 1);

    agent.signal(SIGTERM);
    const auto status = agent.wait(10s);
    REQUIRE(status.has_value());
    CHECK(*status == 0);

    const auto log_text = readFile(err);
    CHECK(log_text.find("rule router-errors (critical): inactive -> pending") != std::string::npos);
    CHECK(log_text.find("rule router-errors (critical): pending -> firing") != std::string::npos);
    CHECK(log_text.find("rolled back after router-errors") != std::string::npos);
}

namespace {

/// 25 stable lines at 20..44 ms and 25 canary lines `factor` times those.
std::string canaryBatch(double factor) {
    std::string out;
    for (int i = 0; i < 25; ++i) {
        const double ms = 20.0 + i;
        out += "{\"variant\":\"stable\",\"status\":200,\"duration_ms\":" + std::to_string(ms) + "}\n";
        out += "{\"variant\":\"canary\",\"status\":200,\"duration_ms\":" + std::to_string(ms * factor) + "}\n";
    }
    return out;
}

}  // namespace

TEST_CASE("a canary comparison's webhook, log and incident say what its value is",
          "[e2e][integration][rule_value]") {
    TempDir dir;
    HttpReceiver receiver;
    std::filesystem::create_directories(dir / "logs");
    std::filesystem::create_directories(dir / "state");
    const auto log = dir / "logs" / "access.log";
    writeFile(log, "");
    const auto d = dir.path().string();
    writeFile(dir / "rollguard.toml",
              "[agent]\n"
              "tick = \"100ms\"\n"
              "listen = \"127.0.0.1:0\"\n"
              "hostname = \"e2e-host\"\n"
              "state_dir = \"" + d + "/state\"\n"
              "[[source]]\n"
              "name = \"app\"\n"
              "type = \"json_log\"\n"
              "paths = [\"" + d + "/logs/*.log\"]\n"
              "read_from = \"beginning\"\n"
              "latency = { field = \"duration_ms\", unit = \"ms\" }\n"
              "labels = { variant = \"variant\" }\n"
              "[[rule]]\n"
              "name = \"canary-slower\"\n"
              "source = \"app\"\n"
              "metric = \"p50\"\n"
              "labels = { variant = \"canary\" }\n"
              "baseline = { labels = { variant = \"stable\" } }\n"
              "compare = \"mann_whitney\"\n"
              "window = \"2s\"\n"
              "min_samples = 100\n"
              "hooks = [\"page\"]\n"
              "[[hook]]\n"
              "name = \"page\"\n"
              "type = \"webhook\"\n"
              "url = \"" + receiver.url("/page") + "\"\n");

    RunningAgent agent(dir / "rollguard.toml");
    // The canary is twice as slow from the start: the median ratio's effect is +100%.
    const bool fired = eventually(
        [&] {
            appendFile(log, canaryBatch(2.0));
            return !receiver.requests().empty();
        },
        15s);
    INFO(agent.stderrText());
    REQUIRE(fired);

    const auto request = receiver.requests().front();
    INFO(request.body);
    simdjson::dom::parser parser;
    simdjson::dom::element body;
    REQUIRE(parser.parse(request.body).get(body) == simdjson::SUCCESS);
    CHECK(std::string_view(body["rule"]) == "canary-slower");
    CHECK(double(body["value"]) == Approx(1.0).margin(0.1));
    CHECK(double(body["threshold"]) == Approx(0.10));
    const auto mw = body["mann_whitney"];
    const auto n1 = int64_t(mw["n_canary"]);
    const auto n2 = int64_t(mw["n_baseline"]);
    CHECK(n1 >= 100);
    CHECK(n2 >= 100);
    CHECK(int64_t(body["samples"]) == std::min(n1, n2));
    CHECK(double(mw["u"]) > static_cast<double>(n1 * n2) / 2.0);
    CHECK(double(mw["z"]) > 3.0);
    CHECK(double(mw["p_value"]) < 0.02);
    CHECK(body["baseline"].error() == simdjson::NO_SUCH_FIELD);
    const std::string summary{std::string_view(body["summary"])};
    CHECK(summary.rfind("p50 +", 0) == 0);
    CHECK(summary.find("% vs baseline, p=") != std::string::npos);
    CHECK(summary.find("(threshold +10.0%, p < 0.02) over 2s (") != std::string::npos);
    CHECK(summary.find("ms") == std::string::npos);

    agent.signal(SIGTERM);
    const auto status = agent.wait(10s);
    REQUIRE(status.has_value());
    CHECK(*status == 0);
    const auto log_text = readFile(agent.stderrPath());
    CHECK(log_text.find("rule canary-slower (critical): inactive -> firing: p50 +") != std::string::npos);

    // The incident record keeps the test; `rollguard incidents` prints the value as such.
    const auto [code, out] = runCommand({ROLLGUARD_BIN, "incidents", "--config", (dir / "rollguard.toml").string()});
    INFO(out);
    CHECK(code == 0);
    CHECK(out.find(" +10") != std::string::npos);  // the list's value column: the effect
    const auto [json_code, json] =
        runCommand({ROLLGUARD_BIN, "incidents", "--config", (dir / "rollguard.toml").string(), "--json"});
    INFO(json);
    CHECK(json_code == 0);
    CHECK(json.find("\"mann_whitney\":{\"u\":") != std::string::npos);
    CHECK(json.find("\"value_text\":\"p50 +") != std::string::npos);
    const std::string id{std::string_view(body["incident_id"])};
    const auto [one_code, one] =
        runCommand({ROLLGUARD_BIN, "incidents", "--config", (dir / "rollguard.toml").string(), id});
    INFO(one);
    CHECK(one_code == 0);
    CHECK(one.find("\n  p50 +") != std::string::npos);
    CHECK(one.find("% vs baseline, p=") != std::string::npos);
    CHECK(one.find("value 1.") == std::string::npos);  // not the bare effect as a value
}
