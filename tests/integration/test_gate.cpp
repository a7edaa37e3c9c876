// The deploy gate and readiness against the real binary (issue #8): /readyz, /api/v1/gate
// flipping when a critical rule goes pending (driven by appending error lines to a real
// log file), its JSON shape, `promtool check metrics` on a live scrape, the status JSON's
// keys, the Grafana dashboard's metric names, and the Kubernetes manifests parsing.

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <memory>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>
#include <simdjson.h>

#include "http_client.h"
#include "http_receiver.h"
#include "process.h"
#include "temp_dir.h"

extern char** environ;

using namespace rollguard::testing;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

/// A log source with a critical error-ratio rule that stays pending (for = 1h), a warning
/// rule that fires at once with a script hook, a scrape source with a gauge rule, and a
/// [rollout] whose gate is that quiet gauge rule.
std::string configText(const TempDir& dir, const HttpReceiver& app, std::uint16_t listen) {
    const auto d = dir.path().string();
    return "[agent]\n"
           "tick = \"100ms\"\n"
           "listen = \"127.0.0.1:" + std::to_string(listen) + "\"\n"
           "\n"
           "[[source]]\n"
           "name = \"web\"\n"
           "type = \"json_log\"\n"
           "paths = [\"" + d + "/app.log\"]\n"
           "read_from = \"beginning\"\n"
           "error = { field = \"status\", gte = 500 }\n"
           "latency = { field = \"ms\", unit = \"ms\" }\n"
           "\n"
           "[[source]]\n"
           "name = \"app\"\n"
           "type = \"prometheus\"\n"
           "url = \"" + app.url("/metrics") + "\"\n"
           "interval = \"200ms\"\n"
           "series.depth = { gauge = 'queue_depth' }\n"
           "\n"
           "[[rule]]\n"
           "name = \"errors\"\n"
           "source = \"web\"\n"
           "severity = \"critical\"\n"
           "metric = \"error_ratio\"\n"
           "above = 0.5\n"
           "window = \"10m\"\n"
           "for = \"1h\"\n"
           "min_samples = 5\n"
           "\n"
           "[[rule]]\n"
           "name = \"busy\"\n"
           "source = \"web\"\n"
           "severity = \"warning\"\n"
           "metric = \"count\"\n"
           "above = 5\n"
           "window = \"10m\"\n"
           "hooks = [\"note\"]\n"
           "\n"
           "[[rule]]\n"
           "name = \"queue-deep\"\n"
           "source = \"app.depth\"\n"
           "severity = \"warning\"\n"
           "metric = \"value\"\n"
           "above = 1000\n"
           "window = \"1m\"\n"
           "\n"
           "[[hook]]\n"
           "name = \"note\"\n"
           "type = \"script\"\n"
           "command = [\"/bin/true\"]\n"
           "\n"
           "[[hook]]\n"
           "name = \"percent\"\n"
           "type = \"script\"\n"
           "command = [\"/bin/true\"]\n"
           "\n"
           "# So /metrics has the rollout families too: starts at 5% (the gate is quiet) and holds.\n"
           "[rollout]\n"
           "stages = [5, 50, 100]\n"
           "hold = \"1h\"\n"
           "gate = [\"queue-deep\"]\n"
           "hooks = [\"percent\"]\n";
}

std::string lines(int n, int status) {
    std::string out;
    for (int i = 0; i < n; ++i) {
        out += "{\"status\":" + std::to_string(status) + ",\"ms\":12}\n";
    }
    return out;
}

/// A running agent over a temp dir, with 10 good lines already in its log.
struct Agent {
    TempDir dir;
    HttpReceiver app;
    ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    std::uint16_t port = reserved.port();
    std::unique_ptr<Process> process;

    Agent() {
        app.setBody("# TYPE queue_depth gauge\nqueue_depth 42\n");
        writeFile(dir / "app.log", lines(10, 200));
        writeFile(dir / "rollguard.toml", configText(dir, app, port));
        process = std::make_unique<Process>(
            std::vector<std::string>{ROLLGUARD_BIN, "run", "--config", (dir / "rollguard.toml").string()},
            (dir / "rollguard.stdout").string(), (dir / "rollguard.stderr").string());
    }
    std::string stderrText() const { return readFile(dir / "rollguard.stderr"); }
};

std::string str(simdjson::dom::element e) {
    return std::string(std::string_view(e));
}

/// Runs argv (no shell) with stdin from `in`, stdout and stderr into `out`; returns the
/// exit status (-1 when it cannot start).
int runWithStdin(const std::vector<std::string>& argv, const fs::path& in, const fs::path& out) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, in.c_str(), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::vector<char*> args;
    for (const auto& a : argv) {
        args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
        return -1;
    }
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid) {
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// Every `rollguard_...` metric name used in the "expr" strings (queries, annotations)
/// and "definition" strings (template variables) of a Grafana dashboard.
std::set<std::string> dashboardMetricNames(const std::string& json) {
    std::set<std::string> names;
    for (const std::string key : {"\"expr\"", "\"definition\""}) {
        for (std::size_t at = json.find(key); at != std::string::npos; at = json.find(key, at + key.size())) {
            const std::size_t open = json.find('"', json.find(':', at + key.size()));
            std::size_t close = open + 1;
            while (close < json.size() && json[close] != '"') {
                close += json[close] == '\\' ? 2 : 1;
            }
            const std::string expr = json.substr(open + 1, close - open - 1);
            for (std::size_t p = expr.find("rollguard_"); p != std::string::npos; p = expr.find("rollguard_", p)) {
                std::size_t e = p;
                while (e < expr.size() && (std::isalnum(static_cast<unsigned char>(expr[e])) || expr[e] == '_')) {
                    ++e;
                }
                names.insert(expr.substr(p, e - p));
                p = e;
            }
        }
    }
    return names;
}

}  // namespace

TEST_CASE("the gate is open while healthy and shuts when a critical rule goes pending", "[integration][exporters][gate]") {
    Agent agent;
    INFO(agent.stderrText());
    REQUIRE(eventually([&] { return httpGet(agent.port, "/readyz").status == 200; }, 10s));
    CHECK(httpGet(agent.port, "/readyz").body == "ready\n");
    CHECK(httpGet(agent.port, "/healthz").status == 200);

    // 10 good lines: "busy" (a warning) fires, which does not shut the default gate.
    REQUIRE(eventually([&] {
        return httpGet(agent.port, "/metrics").body.find("rollguard_rule_state{group=\"\",rule=\"busy\",severity=\"warning\"} 2") !=
               std::string::npos;
    }, 10s));
    auto r = httpGet(agent.port, "/api/v1/gate");
    CHECK(r.status == 200);
    CHECK(r.content_type == "application/json");
    simdjson::dom::parser parser;
    {
        const auto doc = parser.parse(r.body).value();
        CHECK(bool(doc["healthy"]) == true);
        CHECK(bool(doc["ready"]) == true);
        CHECK(doc["evaluated_at"].is_string());
        CHECK(int64_t(doc["rules_checked"]) == 1);
        CHECK(simdjson::dom::array(doc["blocking"]).size() == 0);
    }

    // Naming rules picks them whatever their severity; unknown names are refused.
    r = httpGet(agent.port, "/api/v1/gate?rules=busy");
    CHECK(r.status == 503);
    CHECK(parser.parse(r.body).value()["blocking"].at(0)["rule"].get_string().value() == "busy");
    r = httpGet(agent.port, "/api/v1/gate?rules=busy&always_200=true");
    CHECK(r.status == 200);
    CHECK(bool(parser.parse(r.body).value()["healthy"]) == false);
    r = httpGet(agent.port, "/api/v1/gate?rules=errors,%20queue-deep");
    CHECK(r.status == 200);
    CHECK(int64_t(parser.parse(r.body).value()["rules_checked"]) == 2);
    r = httpGet(agent.port, "/api/v1/gate?rules=errors,typo");
    CHECK(r.status == 400);
    CHECK(r.body.find("typo") != std::string::npos);

    // 20 errors out of 30: the critical rule goes pending (for = 1h) and the gate shuts.
    appendFile(agent.dir / "app.log", lines(20, 503));
    REQUIRE(eventually([&] { return httpGet(agent.port, "/api/v1/gate").status == 503; }, 10s));
    r = httpGet(agent.port, "/api/v1/gate");
    CHECK(r.status == 503);
    CHECK(r.content_type == "application/json");
    const auto doc = parser.parse(r.body).value();
    CHECK(bool(doc["healthy"]) == false);
    CHECK(doc["evaluated_at"].is_string());
    REQUIRE(simdjson::dom::array(doc["blocking"]).size() == 1);
    const auto b = doc["blocking"].at(0);
    CHECK(str(b["rule"]) == "errors");
    CHECK(str(b["group"]).empty());
    CHECK(str(b["severity"]) == "critical");
    CHECK(str(b["state"]) == "pending");
    CHECK(double(b["value"]) == Approx(20.0 / 30.0));
    CHECK(double(b["threshold"]) == 0.5);
    CHECK(b["since"].is_string());

    // Flagger posts its webhook payload; the answer is the same verdict.
    r = httpRequest(agent.port, "POST", "/api/v1/gate", {"Content-Type: application/json"},
                    R"({"name":"podinfo","namespace":"test","phase":"Progressing"})");
    CHECK(r.status == 503);
    CHECK(r.body.find("\"healthy\":false") != std::string::npos);
    // The gate needs no token, and posting to it never reaches the admin API.
    CHECK(httpRequest(agent.port, "POST", "/api/v1/gate?rules=queue-deep", {}, "").status == 200);
}

TEST_CASE("a live /metrics scrape passes promtool check metrics and the status JSON has every key", "[integration][exporters][gate]") {
    Agent agent;
    INFO(agent.stderrText());
    REQUIRE(eventually([&] { return httpGet(agent.port, "/readyz").status == 200; }, 10s));
    // Wait until the scrape source and the hook have data, so every family has samples.
    REQUIRE(eventually([&] {
        const auto body = httpGet(agent.port, "/metrics").body;
        return body.find("rollguard_scrape_up{series=\"\",source=\"app\",target=\"" + agent.app.url("/metrics") +
                         "\"} 1\n") != std::string::npos &&
               body.find("rollguard_hook_runs_total{hook=\"note\",outcome=\"success\",type=\"script\"} 1") !=
                   std::string::npos &&
               body.find("rollguard_rollout_stage_percent 5\n") != std::string::npos;
    }, 10s));
    const auto metrics = httpGet(agent.port, "/metrics");
    REQUIRE(metrics.status == 200);

    if (!fs::exists("/usr/bin/promtool")) {
        WARN("promtool is not installed (scripts/install-deps.sh installs the Debian 'prometheus' package): "
             "skipping promtool check metrics");
    } else {
        writeFile(agent.dir / "metrics.txt", metrics.body);
        const int rc = runWithStdin({"/usr/bin/promtool", "check", "metrics"}, agent.dir / "metrics.txt",
                                    agent.dir / "promtool.out");
        const auto out = readFile(agent.dir / "promtool.out");
        INFO("promtool said:\n" << out);
        CHECK(rc == 0);
        CHECK(out.empty());
    }

    const auto status = httpGet(agent.port, "/api/v1/status");
    REQUIRE(status.status == 200);
    simdjson::dom::parser parser;
    const auto doc = parser.parse(status.body).value();
    for (const char* key : {"version", "config", "started", "last_evaluation", "evaluations", "incidents",
                            "incidents_open", "ready", "checkpoints", "rules", "sources", "scrapes", "hooks",
                            "reloads", "recent_incidents", "rollout", "not_ready"}) {
        INFO(key);
        CHECK(doc[key].error() == simdjson::SUCCESS);
    }
    CHECK(bool(doc["ready"]) == true);
    CHECK(simdjson::dom::array(doc["not_ready"]).size() == 0);
    CHECK(bool(doc["hooks"].at(0)["ready"]) == true);  // /bin/true
    REQUIRE(simdjson::dom::array(doc["rules"]).size() == 3);
    for (const char* key : {"name", "group", "severity", "state", "since", "value", "threshold", "samples",
                            "last_evaluation", "window", "for"}) {
        INFO(key);
        CHECK(doc["rules"].at(0)[key].error() == simdjson::SUCCESS);
    }
    CHECK(doc["rules"].at(0)["last_evaluation"].is_string());
    for (const char* key : {"name", "files", "lines", "bytes", "bad_lines", "rotations", "read_errors", "progress",
                            "latency_last_minute"}) {
        INFO(key);
        CHECK(doc["sources"].at(0)[key].error() == simdjson::SUCCESS);
    }
    for (const char* key : {"source", "target", "up", "last_scrape", "last_error", "errors"}) {
        INFO(key);
        CHECK(doc["scrapes"].at(0)[key].error() == simdjson::SUCCESS);
    }
    for (const char* key : {"name", "type", "successes", "failures", "last_run", "last_message",
                            "last_duration_seconds", "ready", "gating", "problems"}) {
        INFO(key);
        CHECK(doc["hooks"].at(0)[key].error() == simdjson::SUCCESS);
    }
}

TEST_CASE("every metric the Grafana dashboard queries is in a live scrape", "[integration][exporters][gate]") {
    const auto dashboard = readFile(fs::path(ROLLGUARD_SOURCE_DIR) / "exporters/grafana/rollguard.json");
    simdjson::dom::parser parser;
    const auto doc = parser.parse(dashboard);
    REQUIRE(doc.error() == simdjson::SUCCESS);
    REQUIRE(simdjson::dom::array(doc["panels"]).size() > 0);
    const auto names = dashboardMetricNames(dashboard);
    REQUIRE(names.size() >= 8);

    Agent agent;
    INFO(agent.stderrText());
    REQUIRE(eventually([&] { return httpGet(agent.port, "/readyz").status == 200; }, 10s));
    const auto metrics = httpGet(agent.port, "/metrics").body;
    for (const auto& name : names) {
        INFO(name);
        CHECK(metrics.find("# TYPE " + name + " ") != std::string::npos);
    }
}

TEST_CASE("the Kubernetes manifests are well-formed YAML of the expected kinds with a valid rollguard config", "[integration][gate]") {
    const fs::path dir = fs::path(ROLLGUARD_SOURCE_DIR) / "deploy/kubernetes";
    const std::vector<std::string> files = {(dir / "rollguard-sidecar.yaml").string(),
                                            (dir / "argo-analysis-template.yaml").string(),
                                            (dir / "flagger-canary.yaml").string()};
    for (const auto& f : files) {
        REQUIRE(fs::exists(f));
    }
    if (runCommand({"/usr/bin/python3", "-c", "import yaml"}).first != 0) {
        WARN("python3-yaml is not installed: only checking the manifests exist");
        return;
    }
    // Prints each document's kind and writes the ConfigMap's rollguard.toml to argv[1].
    TempDir tmp;
    const std::string toml = (tmp / "rollguard.toml").string();
    std::vector<std::string> argv = {"/usr/bin/python3", "-c",
                                     "import sys, yaml\n"
                                     "for f in sys.argv[2:]:\n"
                                     "    for d in yaml.safe_load_all(open(f)):\n"
                                     "        if not d: continue\n"
                                     "        print(d['kind'])\n"
                                     "        if d['kind'] == 'ConfigMap':\n"
                                     "            open(sys.argv[1], 'w').write(d['data']['rollguard.toml'])\n",
                                     toml};
    argv.insert(argv.end(), files.begin(), files.end());
    const auto [rc, out] = runCommand(argv);
    INFO(out);
    CHECK(rc == 0);
    for (const char* kind : {"ConfigMap", "Deployment", "Service", "AnalysisTemplate", "Canary"}) {
        CHECK(out.find(std::string(kind) + "\n") != std::string::npos);
    }
    // The sidecar's config is one rollguard accepts.
    const auto [check_rc, check_out] = runCommand({ROLLGUARD_BIN, "check", "--config", toml});
    INFO(check_out);
    CHECK(check_rc == 0);
}
