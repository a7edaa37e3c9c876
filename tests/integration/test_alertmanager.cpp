// The alertmanager hook against a real prometheus-alertmanager (Debian package) on
// loopback, routing to a webhook receiver of the test: the alert arrives through
// Alertmanager's routing, then resolves. Then the same through the real `rollguard run`
// (issue #19): a critical rule's resolve ends the alert and the re-sends stop.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <simdjson.h>

#include "agent_config.h"
#include "http_client.h"
#include "http_receiver.h"
#include "process.h"
#include "rollguard/agent/hooks.h"
#include "running_agent.h"
#include "temp_dir.h"

using namespace rollguard::testing;
using namespace std::chrono_literals;

namespace {

const char* const kAlertmanagerCandidates[] = {"/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"};

std::string findAlertmanager() {
    for (const char* path : kAlertmanagerCandidates) {
        if (::access(path, X_OK) == 0) {
            return path;
        }
    }
    return {};
}

/// Notifications Alertmanager delivered with `status`, as (alertname, status) checks.
bool hasNotification(const HttpReceiver& receiver, const std::string& status) {
    for (const auto& req : receiver.requests()) {
        simdjson::dom::parser parser;
        simdjson::dom::element doc;
        if (parser.parse(req.body).get(doc) != simdjson::SUCCESS) {
            continue;
        }
        std::string_view s;
        if (doc["status"].get(s) == simdjson::SUCCESS && s == status) {
            return true;
        }
    }
    return false;
}

/// A prometheus-alertmanager on a port reserved for it, routing every alert (grouped by
/// alertname, no waits) to `receiver` with send_resolved. Files in `dir`.
class RealAlertmanager {
public:
    RealAlertmanager(const TempDir& dir, const HttpReceiver& receiver)
        : dir_(dir.path()) {
        const std::string binary = findAlertmanager();
        INFO("prometheus-alertmanager is not installed: run scripts/install-deps.sh (apt-get install "
             "prometheus-alertmanager)");
        REQUIRE_FALSE(binary.empty());
        writeFile(dir_ / "alertmanager.yml",
                  "route:\n"
                  "  receiver: test\n"
                  "  group_by: ['alertname']\n"
                  "  group_wait: 0s\n"
                  "  group_interval: 1s\n"
                  "  repeat_interval: 1h\n"
                  "receivers:\n"
                  "  - name: test\n"
                  "    webhook_configs:\n"
                  "      - url: " + receiver.url("/am") + "\n"
                  "        send_resolved: true\n");
        // Alertmanager's port, nobody else's while it lives: until it listens, the hook's
        // connections are refused (and retried), never answered by another test's server.
        process_ = std::make_unique<Process>(
            std::vector<std::string>{binary, "--config.file=" + (dir_ / "alertmanager.yml").string(),
                                     "--storage.path=" + (dir_ / "data").string(),
                                     "--web.listen-address=127.0.0.1:" + std::to_string(port()),
                                     "--cluster.listen-address=", "--log.level=warn"},
            (dir_ / "am.out").string(), (dir_ / "am.err").string());
        // Ready before the test sends anything: a firing alert gets one push (its re-sends
        // are its retries), which must not meet a port nobody listens on yet.
        const bool ready = eventually([&] { return httpGet(port(), "/-/ready").status == 200; }, 60s);
        INFO("alertmanager stderr: " << stderrText());
        REQUIRE(ready);
    }

    std::uint16_t port() const { return reserved_.port(); }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }
    std::string stderrText() const { return readFile(dir_ / "am.err"); }

private:
    std::filesystem::path dir_;
    ReservedPort reserved_;
    std::unique_ptr<Process> process_;
};

/// One alert as GET /api/v2/alerts lists it (Alertmanager leaves resolved ones out).
struct ListedAlert {
    std::string state;       ///< status.state: "active", "suppressed", "unprocessed"
    std::string ends_at;
    std::string updated_at;
};

/// The alert named `alertname` in Alertmanager's GET /api/v2/alerts, nullopt when it is
/// not listed (resolved, or never received); `answered` is false when Alertmanager did
/// not answer with a JSON array.
std::optional<ListedAlert> listedAlert(std::uint16_t port, const std::string& alertname, bool* answered = nullptr) {
    const HttpResponse r = httpGet(port, "/api/v2/alerts");
    simdjson::dom::parser parser;
    simdjson::dom::array alerts;
    const bool ok = r.status == 200 && parser.parse(r.body).get(alerts) == simdjson::SUCCESS;
    if (answered != nullptr) {
        *answered = ok;
    }
    if (!ok) {
        return std::nullopt;
    }
    for (const simdjson::dom::element a : alerts) {
        std::string_view name;
        if (a["labels"]["alertname"].get(name) != simdjson::SUCCESS || name != alertname) {
            continue;
        }
        ListedAlert out;
        std::string_view v;
        if (a["status"]["state"].get(v) == simdjson::SUCCESS) {
            out.state = v;
        }
        if (a["endsAt"].get(v) == simdjson::SUCCESS) {
            out.ends_at = v;
        }
        if (a["updatedAt"].get(v) == simdjson::SUCCESS) {
            out.updated_at = v;
        }
        return out;
    }
    return std::nullopt;
}

/// The endsAt of the alert in each POST `receiver` got (the hook sends one alert per POST
/// here), in arrival order. RFC 3339 with milliseconds, so they compare as text.
std::vector<std::string> postedEndsAt(const HttpReceiver& receiver) {
    std::vector<std::string> out;
    for (const auto& req : receiver.requests()) {
        simdjson::dom::parser parser;
        simdjson::dom::element doc;
        std::string_view ends;
        if (parser.parse(req.body).get(doc) == simdjson::SUCCESS &&
            doc.at(0)["endsAt"].get(ends) == simdjson::SUCCESS) {
            out.emplace_back(ends);
        }
    }
    return out;
}

std::size_t countOf(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) {
        ++n;
    }
    return n;
}

}  // namespace

TEST_CASE("alertmanager hook: the alert fires and resolves through a real Alertmanager", "[integration][alertmanager]") {
    TempDir dir;
    HttpReceiver receiver;
    RealAlertmanager am(dir, receiver);

    rollguard::agent::HookConfig c;
    c.name = "am";
    c.type = rollguard::agent::HookType::Alertmanager;
    c.url = am.url();
    c.timeout = 2s;
    c.retries = 2;
    c.retry_backoff = 100ms;
    c.resend_interval = 1s;
    c.external_url = "http://agent-1:9464";
    auto hook = rollguard::agent::makeHook(c);

    rollguard::agent::BreachEvent e;
    e.rule = "checkout-p99";
    e.severity = "critical";
    e.state = "firing";
    e.source = "api";
    e.metric = "p99";
    e.host = "web-1";
    e.summary = "p99 412ms > 200ms over 30s";
    e.since = std::chrono::system_clock::now() - 10s;
    e.fired_at = std::chrono::system_clock::now();
    const auto fired = hook->run(e);
    INFO("alertmanager stderr: " << am.stderrText());
    REQUIRE(fired.ok);

    REQUIRE(eventually([&] { return hasNotification(receiver, "firing"); }, 30s));
    const auto reqs = receiver.requests();
    simdjson::dom::parser parser;
    const simdjson::dom::element doc = parser.parse(reqs.front().body);
    CHECK(std::string_view(doc["version"]) == "4");
    CHECK(std::string_view(doc["receiver"]) == "test");
    const simdjson::dom::element alert = doc["alerts"].at(0);
    CHECK(std::string_view(alert["labels"]["alertname"]) == "checkout-p99");
    CHECK(std::string_view(alert["labels"]["severity"]) == "critical");
    CHECK(std::string_view(alert["labels"]["instance"]) == "web-1");
    CHECK(std::string_view(alert["annotations"]["summary"]) == "p99 412ms > 200ms over 30s");
    CHECK(std::string_view(alert["generatorURL"]) == "http://agent-1:9464/api/v1/status");

    e.state = "resolved";
    e.resolved_at = std::chrono::system_clock::now();
    REQUIRE(hook->run(e).ok);
    REQUIRE(eventually([&] { return hasNotification(receiver, "resolved"); }, 30s));
}

TEST_CASE("rollguard run: a critical rule's resolve resolves its Alertmanager alert and the re-sends stop",
          "[integration][alertmanager][e2e]") {
    TempDir dir;
    HttpReceiver notifications;  // Alertmanager's webhook receiver
    HttpReceiver shadow;         // a second alertmanager hook's "Alertmanager": counts every POST
    RealAlertmanager am(dir, notifications);
    const std::string kEnv = "FEATURE_ENABLED=1\n";
    writeFile(dir / "app.log", "");
    writeFile(dir / "app.env", kEnv);
    ErrorRatioConfig extra;
    extra.agent = "tick = \"100ms\"\nlisten = \"\"\nhostname = \"am-e2e\"\n";
    extra.rule = "severity = \"critical\"\nfor = \"300ms\"\nhooks = [\"disable-feature\", \"am\", \"am-shadow\"]\n";
    extra.tail = "[[hook]]\n"
                 "name = \"disable-feature\"\n"
                 "type = \"env_file\"\n"
                 "path = \"" + (dir / "app.env").string() + "\"\n"
                 "set = { FEATURE_ENABLED = \"0\" }\n"
                 "\n"
                 "[[hook]]\n"
                 "name = \"am\"\n"
                 "type = \"alertmanager\"\n"
                 "url = \"" + am.url() + "\"\n"
                 "resend_interval = \"1s\"\n"
                 "timeout = \"2s\"\n"
                 "retries = 2\n"
                 "retry_backoff = \"100ms\"\n"
                 "\n"
                 "[[hook]]\n"
                 "name = \"am-shadow\"\n"
                 "type = \"alertmanager\"\n"
                 "url = \"" + shadow.url() + "\"\n"
                 "resend_interval = \"1s\"\n"
                 "timeout = \"2s\"\n";
    writeFile(dir / "rollguard.toml", errorRatioConfig(dir.path(), extra));
    RunningAgent agent(dir / "rollguard.toml");
    INFO("alertmanager stderr: " << am.stderrText());

    // Fires: the env file is rewritten, Alertmanager lists the alert active and the hook
    // re-sends it while it fires.
    appendFile(dir / "app.log", statusLines(20, 503));
    REQUIRE(eventually([&] { return readFile(dir / "app.env") == "FEATURE_ENABLED=0\n"; }, 30s));
    REQUIRE(eventually(
        [&] {
            const auto a = listedAlert(am.port(), "errors");
            return a && a->state == "active";
        },
        30s));
    REQUIRE(eventually([&] { return shadow.requests().size() >= 3; }, 30s));  // the fire, then re-sends
    CHECK(eventually([&] { return hasNotification(notifications, "firing"); }, 30s));
    // The operator puts the file back: a rollback hook run again on resolve would undo it.
    writeFile(dir / "app.env", kEnv);

    // Resolves: the healthy lines bring the error ratio to 20/80.
    appendFile(dir / "app.log", statusLines(60, 200));
    INFO("agent log: " << agent.stderrText());
    REQUIRE(eventually([&] { return countOf(agent.stderrText(), "hook am-shadow (rule errors): ok") == 2; }, 30s));
    REQUIRE(eventually([&] { return countOf(agent.stderrText(), "hook am (rule errors): ok") == 2; }, 30s));
    const std::string log = agent.stderrText();
    CHECK(log.find("rule errors (critical): firing -> resolved") != std::string::npos);
    CHECK(log.find("rule errors: running hooks [am, am-shadow] (resolve)") != std::string::npos);
    // Alertmanager: the alert is no longer listed (it lists only unresolved alerts) and
    // its receiver got the resolved notification.
    bool answered = false;
    CHECK(eventually([&] { return !listedAlert(am.port(), "errors", &answered) && answered; }, 30s));
    CHECK(eventually([&] { return hasNotification(notifications, "resolved"); }, 30s));

    // Stays resolved: three resend intervals and a half later nothing more was posted, the
    // last POST is the resolve (its endsAt, the resolve time, is before the endsAt the
    // firing POST before it promised) and Alertmanager still lists no alert. The pause only
    // gives a re-send (the bug) the chance to show.
    const std::size_t posts = shadow.requests().size();
    std::this_thread::sleep_for(3500ms);
    CHECK(shadow.requests().size() == posts);
    const auto ends = postedEndsAt(shadow);
    REQUIRE(ends.size() >= 2);
    CHECK(ends.back() < ends[ends.size() - 2]);
    CHECK_FALSE(listedAlert(am.port(), "errors", &answered));
    CHECK(answered);
    // The rollback ran once: the env file stays as the operator left it.
    CHECK(readFile(dir / "app.env") == kEnv);
    CHECK(countOf(agent.stderrText(), "hook disable-feature (rule errors): ok") == 1);
}

TEST_CASE("rollguard run: a reload that removes a firing rule resolves its alert; the one that stays firing is "
          "re-sent by the new hook",
          "[integration][alertmanager][reload]") {
    TempDir dir;
    HttpReceiver notifications;
    RealAlertmanager am(dir, notifications);
    writeFile(dir / "app.log", "");
    const std::string am_hook = "[[hook]]\n"
                                "name = \"am\"\n"
                                "type = \"alertmanager\"\n"
                                "url = \"" + am.url() + "\"\n"
                                "resend_interval = \"1s\"\n"
                                "timeout = \"2s\"\n"
                                "retries = 20\n"
                                "retry_backoff = \"100ms\"\n";
    const std::string second_rule = "[[rule]]\n"
                                    "name = \"errors-too\"\n"
                                    "source = \"app\"\n"
                                    "metric = \"error_ratio\"\n"
                                    "above = 0.5\n"
                                    "window = \"1m\"\n"
                                    "hooks = [\"am\"]\n\n";
    ErrorRatioConfig extra;
    extra.agent = "tick = \"100ms\"\nlisten = \"\"\nhostname = \"am-reload\"\n";
    extra.rule = "severity = \"critical\"\nhooks = [\"am\"]\n";
    extra.tail = second_rule + am_hook;
    writeFile(dir / "rollguard.toml", errorRatioConfig(dir.path(), extra));
    RunningAgent agent(dir / "rollguard.toml");
    INFO("alertmanager stderr: " << am.stderrText());

    appendFile(dir / "app.log", statusLines(20, 503));
    const auto active = [&](const std::string& name) {
        const auto a = listedAlert(am.port(), name);
        return a && a->state == "active";
    };
    REQUIRE(eventually([&] { return active("errors") && active("errors-too"); }, 30s));

    // The reload drops "errors-too" while both still fire.
    extra.tail = am_hook;
    writeFile(dir / "rollguard.toml", errorRatioConfig(dir.path(), extra));
    agent.signal(SIGHUP);
    INFO("agent log: " << agent.stderrText());
    REQUIRE(eventually(
        [&] {
            return agent.stderrText().find("rule errors-too: its firing episode ended with the reload: resolving it "
                                           "through [am]") != std::string::npos;
        },
        30s));
    CHECK(agent.stderrText().find("rule errors: still firing after the reload: re-sending its alert through [am]") !=
          std::string::npos);
    bool answered = false;
    CHECK(eventually([&] { return !listedAlert(am.port(), "errors-too", &answered) && answered; }, 30s));
    // "errors" goes on firing: more than 4 resend intervals after the reload (the endsAt
    // the old hook's last send promised) Alertmanager still lists it active, because the
    // new hook re-sends it.
    std::this_thread::sleep_for(5s);
    CHECK(active("errors"));
    CHECK_FALSE(listedAlert(am.port(), "errors-too", &answered));
    CHECK(answered);
}

TEST_CASE("rollguard rearm: a rule still firing keeps its alert active until it resolves; after the rearm its next "
          "fire alerts again",
          "[integration][alertmanager][rearm]") {
    TempDir dir;
    HttpReceiver notifications;
    RealAlertmanager am(dir, notifications);
    writeFile(dir / "app.log", "");
    writeAdminToken(dir / "token");
    const ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    ErrorRatioConfig extra;
    extra.agent = "tick = \"100ms\"\nhostname = \"am-rearm\"\nlisten = \"127.0.0.1:" +
                  std::to_string(reserved.port()) + "\"\nstate_dir = \"" + (dir / "state").string() +
                  "\"\nadmin_token_file = \"" + (dir / "token").string() + "\"\n";
    extra.rule = "severity = \"critical\"\nhooks = [\"am\"]\n";
    extra.tail = "[[hook]]\n"
                 "name = \"am\"\n"
                 "type = \"alertmanager\"\n"
                 "url = \"" + am.url() + "\"\n"
                 "resend_interval = \"1s\"\n"
                 "timeout = \"2s\"\n"
                 "retries = 20\n"
                 "retry_backoff = \"100ms\"\n";
    const std::string cfg = (dir / "rollguard.toml").string();
    writeFile(cfg, errorRatioConfig(dir.path(), extra));
    RunningAgent agent(cfg);
    REQUIRE(agent.waitHealthy(reserved.port()));
    INFO("alertmanager stderr: " << am.stderrText());
    INFO("agent log: " << agent.stderrText());
    const auto active = [&] {
        const auto a = listedAlert(am.port(), "errors");
        return a && a->state == "active";
    };
    const auto ok_runs = [&] { return countOf(agent.stderrText(), "hook am (rule errors): ok"); };

    appendFile(dir / "app.log", statusLines(20, 503));
    REQUIRE(eventually(active, 30s));
    REQUIRE(eventually([&] { return ok_runs() == 1; }, 30s));

    // A rearm ends no episode: the rule still fires, so its alert stays active (past the
    // 4 resend intervals an abandoned alert would last) and nothing is sent resolved.
    const auto [rc, out] = runCommand({ROLLGUARD_BIN, "rearm", "-c", cfg});
    INFO(out);
    REQUIRE(rc == 0);
    std::this_thread::sleep_for(5s);
    CHECK(active());
    CHECK(ok_runs() == 1);

    // It resolves as usual: resolved in Alertmanager.
    appendFile(dir / "app.log", statusLines(60, 200));
    REQUIRE(eventually([&] { return ok_runs() == 2; }, 30s));
    bool answered = false;
    CHECK(eventually([&] { return !listedAlert(am.port(), "errors", &answered) && answered; }, 30s));

    // Re-armed: the next breach is a new incident that runs its hooks again.
    appendFile(dir / "app.log", statusLines(200, 503));
    CHECK(eventually([&] { return ok_runs() == 3; }, 30s));
    CHECK(eventually(active, 30s));
}
