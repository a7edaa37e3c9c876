#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "config_diags.h"
#include "rollguard/agent/config.h"
#include "temp_dir.h"

using namespace std::chrono_literals;
using rollguard::agent::Config;
using rollguard::agent::Diagnostic;
using rollguard::agent::ErrorPredicate;
using rollguard::agent::HookType;
using rollguard::agent::LatencyUnit;
using rollguard::agent::loadConfigFile;
using rollguard::agent::LoadResult;
using rollguard::agent::LogFormat;
using rollguard::agent::parseConfig;
using rollguard::agent::ReadFrom;
using rollguard::agent::WatchMode;
using rollguard::rules::Comparison;
using rollguard::rules::MetricKind;
using rollguard::rules::Severity;
using rollguard::testing::TempDir;
using rollguard::testing::writeFile;

namespace {

using Strings = std::vector<std::string>;
using Pairs = std::vector<std::pair<std::string, std::string>>;

const std::string& kPath = rollguard::testing::kConfigPath;
using rollguard::testing::diags;
using rollguard::testing::errorsOf;
using rollguard::testing::warningsOf;

/// Lines 1-17: two sources (api has latency, app does not; both have labels) and one hook. Tests append
/// a [[rule]] or [[hook]] starting on line 18.
const std::string kBase =
    "[[source]]\n"                                 // 1
    "name = \"app\"\n"                             // 2
    "type = \"json_log\"\n"                        // 3
    "paths = [\"app.jsonl\"]\n"                    // 4
    "error = { field = \"status\", gte = 500 }\n"  // 5
    "labels = { route = \"route\" }\n"            // 6
    "[[source]]\n"                                 // 7
    "name = \"api\"\n"                             // 8
    "type = \"json_log\"\n"                        // 9
    "paths = [\"api.jsonl\"]\n"                    // 10
    "latency = { field = \"duration_ms\" }\n"      // 11
    "labels = { variant = \"v\", route = \"r\", env = \"e\", host = \"h\", odd = \"o\" }\n"  // 12
    "[[hook]]\n"                                   // 13
    "name = \"rollback\"\n"                        // 14
    "type = \"script\"\n"                          // 15
    "command = [\"./rollback.sh\"]\n"              // 16
    "\n";                                          // 17

/// A valid rule whose line `23` (after the four lines name/source/metric/threshold) is
/// `line23`; the rest is fixed.
std::string ruleWith(const std::string& line23) {
    return kBase +
           "[[rule]]\n"                // 18
           "name = \"r\"\n"            // 19
           "source = \"app\"\n"        // 20
           "metric = \"error_ratio\"\n"  // 21
           "above = 0.05\n"            // 22
           + line23 + "\n"             // 23
           "hooks = [\"rollback\"]\n";  // 24
}

const std::string kFull = R"(# every key, non-default values
[agent]
tick = "250ms"
evaluation_interval = "125ms"
state_dir = "state"
listen = "[::1]:9100"
log_level = "debug"
hostname = "canary-1"
dry_run = true

[[source]]
name = "app.v2"
type = "json_log"
paths = ["logs/*.jsonl", "/var/log/app.jsonl"]
read_from = "beginning"
latency = { field = "http.duration", unit = "us" }
error = { field = "level", in = ["error", "fatal"] }
max_line_bytes = 4096
poll_interval = "250ms"

[[source]]
name = "worker"
type = "json_log"
paths = ["../worker/out.jsonl"]
error = { field = "failed", equals = true }

[[rule]]
name = "p99-latency"
severity = "warning"
source = "app.v2"
metric = "p99.9"
below = "1.5ms"
window = "10m"
for = "2m30s"
min_samples = 50
hooks = ["notify", "undo"]
description = "p99.9 fell off a cliff"

[[rule]]
name = "errors"
source = "worker"
metric = "error_ratio"
above = 0.05
hooks = ["flags"]

[[rule]]
name = "tail"
severity = "critical"
source = "app.v2"
metric = "quantile"
quantile = 0.995
above = 2
hooks = ["undo"]

[[hook]]
name = "flags"
type = "env_file"
path = "env/app.env"
set = { ZED = "off", ROLLOUT_PERCENT = 0, USE_V2 = false, RATIO = 0.5 }
unset = ["CANARY"]
create = true
backup = false
timeout = "3s"

[[hook]]
name = "notify"
type = "webhook"
url = "https://hooks.example.com/rollguard"
headers = { X-Scope-OrgID = "tenant-a", X-Team = "payments" }
retries = 0
retry_backoff = "2s"

[[hook]]
name = "undo"
type = "script"
command = ["bin/undo.sh", "--now", "relative/arg"]
env = { DEPLOY = "checkout", ATTEMPT = 1 }
)";

}  // namespace

TEST_CASE("a full config loads into exact typed values", "[config]") {
    const LoadResult r = parseConfig(kFull, kPath);
    INFO((r.diagnostics.empty() ? std::string() : r.diagnostics.front().format()));
    REQUIRE(r.ok());
    CHECK(r.diagnostics.empty());
    const Config& c = *r.config;
    CHECK(c.path == kPath);

    CHECK(c.agent.tick == 250ms);
    CHECK(c.agent.evaluation_interval == 125ms);
    CHECK(c.agent.state_dir == "/etc/rollguard/state");
    CHECK(c.agent.listen == "[::1]:9100");
    CHECK(c.agent.log_level == "debug");
    CHECK(c.agent.hostname == "canary-1");
    CHECK(c.agent.dry_run);

    REQUIRE(c.sources.size() == 2);
    const auto& app = c.sources[0];
    CHECK(app.name == "app.v2");
    CHECK(app.paths == Strings{"/etc/rollguard/logs/*.jsonl", "/var/log/app.jsonl"});
    CHECK(app.read_from == ReadFrom::Beginning);
    REQUIRE(app.latency.has_value());
    CHECK(app.latency->field == "http.duration");
    CHECK(app.latency->unit == LatencyUnit::Microseconds);
    CHECK(app.latency->location.line == 16);
    CHECK(app.latency->location.column == 11);
    CHECK(app.error.kind == ErrorPredicate::Kind::StringIn);
    CHECK(app.error.field == "level");
    CHECK(app.error.in == Strings{"error", "fatal"});
    CHECK(app.max_line_bytes == 4096);
    CHECK(app.poll_interval == 250ms);
    CHECK(app.location.file == kPath);
    CHECK(app.location.line == 11);
    CHECK(app.location.column == 1);

    const auto& worker = c.sources[1];
    CHECK(worker.name == "worker");
    CHECK(worker.paths == Strings{"/etc/worker/out.jsonl"});
    CHECK(worker.read_from == ReadFrom::End);
    CHECK_FALSE(worker.latency.has_value());
    CHECK(worker.error.kind == ErrorPredicate::Kind::IsTrue);
    CHECK(worker.error.field == "failed");
    CHECK(worker.max_line_bytes == 65536);
    CHECK(worker.poll_interval == 1s);

    REQUIRE(c.rules.size() == 3);
    const auto& p99 = c.rules[0];
    CHECK(p99.name == "p99-latency");
    CHECK(p99.severity == Severity::Warning);
    CHECK(p99.source == "app.v2");
    CHECK(p99.metric.kind == MetricKind::Quantile);
    CHECK(p99.metric.quantile == Approx(0.999).epsilon(1e-12));
    CHECK(p99.metric.text == "p99.9");
    CHECK(p99.comparison == Comparison::Below);
    CHECK(p99.threshold == Approx(0.0015).epsilon(1e-12));
    CHECK(p99.window == 10min);
    CHECK(p99.for_ == 150s);
    CHECK(p99.min_samples == 50);
    CHECK(p99.hooks == Strings{"notify", "undo"});
    CHECK(p99.description == "p99.9 fell off a cliff");
    CHECK(p99.location.line == 27);
    CHECK(p99.location.column == 1);

    const auto& errors = c.rules[1];
    CHECK(errors.severity == Severity::Critical);
    CHECK(errors.metric.kind == MetricKind::ErrorRatio);
    CHECK(errors.metric.text == "error_ratio");
    CHECK(errors.comparison == Comparison::Above);
    CHECK(errors.threshold == 0.05);
    CHECK(errors.window == 5min);
    CHECK(errors.for_ == 0s);
    CHECK(errors.min_samples == 1);
    CHECK(errors.description.empty());

    const auto& tail = c.rules[2];
    CHECK(tail.metric.kind == MetricKind::Quantile);
    CHECK(tail.metric.quantile == 0.995);
    CHECK(tail.metric.text == "p99.5");
    CHECK(tail.threshold == 2.0);  // a plain number is seconds

    REQUIRE(c.hooks.size() == 3);
    const auto& flags = *c.findHook("flags");
    CHECK(flags.type == HookType::EnvFile);
    CHECK(flags.path == "/etc/rollguard/env/app.env");
    CHECK(flags.set == Pairs{{"ZED", "off"}, {"ROLLOUT_PERCENT", "0"}, {"USE_V2", "false"}, {"RATIO", "0.5"}});
    CHECK(flags.unset == Strings{"CANARY"});
    CHECK(flags.create);
    CHECK_FALSE(flags.backup);
    CHECK(flags.timeout == 3s);

    const auto& notify = *c.findHook("notify");
    CHECK(notify.type == HookType::Webhook);
    CHECK(notify.url == "https://hooks.example.com/rollguard");
    CHECK(notify.headers == Pairs{{"X-Scope-OrgID", "tenant-a"}, {"X-Team", "payments"}});
    CHECK(notify.retries == 0);
    CHECK(notify.retry_backoff == 2s);
    CHECK(notify.timeout == 10s);

    const auto& undo = *c.findHook("undo");
    CHECK(undo.type == HookType::Script);
    CHECK(undo.command == Strings{"/etc/rollguard/bin/undo.sh", "--now", "relative/arg"});
    CHECK(undo.env == Pairs{{"DEPLOY", "checkout"}, {"ATTEMPT", "1"}});
    CHECK(undo.location.line == 73);
}

TEST_CASE("defaults fill a config that only has what it needs", "[config]") {
    const LoadResult r = loadConfigFile(ROLLGUARD_SOURCE_DIR "/config/examples/minimal.toml");
    for (const auto& d : r.diagnostics) {
        INFO(d.format());
        CHECK(false);
    }
    REQUIRE(r.ok());
    const Config& c = *r.config;
    CHECK(c.agent.tick == 1s);
    CHECK(c.agent.state_dir.empty());
    CHECK(c.agent.listen == "127.0.0.1:9464");
    CHECK(c.agent.log_level == "info");
    CHECK(c.agent.log_format == LogFormat::Text);
    CHECK(c.agent.hostname.empty());
    CHECK_FALSE(c.agent.dry_run);
    REQUIRE(c.sources.size() == 1);
    CHECK(c.sources[0].read_from == ReadFrom::End);
    CHECK(c.sources[0].exclude.empty());
    CHECK(c.sources[0].watch == WatchMode::Auto);
    CHECK(c.sources[0].rotate_wait == 5s);
    CHECK(c.sources[0].error.kind == ErrorPredicate::Kind::NumberAtLeast);
    CHECK(c.sources[0].error.gte == 500.0);
    REQUIRE(c.rules.size() == 1);
    CHECK(c.rules[0].severity == Severity::Critical);
    CHECK(c.rules[0].window == 5min);
    CHECK(c.rules[0].for_ == 0s);
    CHECK(c.rules[0].min_samples == 1);
    REQUIRE(c.hooks.size() == 1);
    CHECK(c.hooks[0].timeout == 10s);
    CHECK_FALSE(c.hooks[0].create);
    CHECK(c.hooks[0].backup);
}

TEST_CASE("relative paths resolve against the config file's directory", "[config]") {
    TempDir dir;
    std::filesystem::create_directories(dir / "etc");
    writeFile(dir / "etc/rollguard.toml", kBase +
                                              "[[hook]]\n"
                                              "name = \"env\"\n"
                                              "type = \"env_file\"\n"
                                              "path = \"../app/.env\"\n"
                                              "unset = [\"X\"]\n"
                                              "[[hook]]\n"
                                              "name = \"bare\"\n"
                                              "type = \"script\"\n"
                                              "command = [\"rollback\", \"./arg\"]\n");
    const LoadResult r = loadConfigFile((dir / "etc/rollguard.toml").string());
    REQUIRE(r.ok());
    const std::string root = dir.path().string();
    CHECK(r.config->sources[0].paths == Strings{root + "/etc/app.jsonl"});
    CHECK(r.config->findHook("rollback")->command == Strings{root + "/etc/rollback.sh"});
    CHECK(r.config->findHook("env")->path == root + "/app/.env");
    // No slash: left for PATH lookup; arguments are never rewritten.
    CHECK(r.config->findHook("bare")->command == Strings{"rollback", "./arg"});
}

TEST_CASE("an unreadable config file is a diagnostic", "[config]") {
    TempDir dir;
    const std::string missing = (dir / "nope.toml").string();
    LoadResult r = loadConfigFile(missing);
    CHECK_FALSE(r.ok());
    REQUIRE(r.diagnostics.size() == 1);
    CHECK(r.diagnostics[0].format() == missing + ": error: cannot read config: No such file or directory");

    r = loadConfigFile(dir.path().string());
    CHECK_FALSE(r.ok());
    REQUIRE(r.diagnostics.size() == 1);
    CHECK(r.diagnostics[0].message == "cannot read config: it is a directory");
}

TEST_CASE("config errors point at file:line:col", "[config]") {
    SECTION("unknown key, with a suggestion") {
        CHECK(errorsOf(ruleWith("windw = \"5m\"")) ==
              Strings{"23:1: unknown key 'windw' in [[rule]] (did you mean 'window'?)"});
        CHECK(errorsOf("[agnet]\n" + kBase) == Strings{"1:2: unknown key 'agnet' at top level (did you mean 'agent'?)"});
        CHECK(errorsOf(ruleWith("retry = 3")) == Strings{"23:1: unknown key 'retry' in [[rule]]"});
    }
    SECTION("the message formats with the file") {
        const LoadResult r = parseConfig(ruleWith("windw = \"5m\""), kPath);
        REQUIRE(r.diagnostics.size() == 1);
        CHECK(r.diagnostics[0].format() ==
              kPath + ":23:1: error: unknown key 'windw' in [[rule]] (did you mean 'window'?)");
    }
    SECTION("bad duration") {
        CHECK(errorsOf(ruleWith("window = \"5x\"")) ==
              Strings{"23:10: 'window' is not a valid duration: \"5x\" (use a number and a unit: ns, us, ms, s, m, h, "
                      "d; e.g. \"500ms\", \"30s\", \"1h30m\")"});
        CHECK(errorsOf(ruleWith("window = \"0s\"")) == Strings{"23:10: 'window' must be greater than zero"});
    }
    SECTION("wrong type") {
        CHECK(errorsOf(ruleWith("window = 5")) ==
              Strings{"23:10: 'window' must be a duration string like \"5m\", got integer"});
        CHECK(errorsOf(ruleWith("min_samples = \"10\"")) == Strings{"23:15: 'min_samples' must be an integer, got string"});
        CHECK(errorsOf(ruleWith("min_samples = 0")) == Strings{"23:15: 'min_samples' must be at least 1, got 0"});
        CHECK(errorsOf(ruleWith("description = 1.5")) == Strings{"23:15: 'description' must be a string, got float"});
    }
    SECTION("missing required key points at the table header") {
        CHECK(errorsOf(kBase +
                       "[[rule]]\n"
                       "name = \"r\"\n"
                       "source = \"app\"\n"
                       "above = 0.05\n"
                       "hooks = [\"rollback\"]\n") == Strings{"18:1: missing required key 'metric' in [[rule]]"});
    }
    SECTION("rule referencing an unknown source") {
        CHECK(errorsOf(kBase +
                       "[[rule]]\n"
                       "name = \"r\"\n"
                       "source = \"db\"\n"
                       "metric = \"count\"\n"
                       "above = 10\n"
                       "hooks = [\"rollback\"]\n") == Strings{"20:10: unknown source 'db' (defined sources: api, app)"});
        CHECK(errorsOf(kBase +
                       "[[rule]]\n"
                       "name = \"r\"\n"
                       "source = \"aap\"\n"
                       "metric = \"count\"\n"
                       "above = 10\n"
                       "hooks = [\"rollback\"]\n") == Strings{"20:10: unknown source 'aap' (did you mean 'app'?)"});
    }
    SECTION("unknown hook name") {
        CHECK(errorsOf(kBase +
                       "[[rule]]\n"
                       "name = \"r\"\n"
                       "source = \"app\"\n"
                       "metric = \"count\"\n"
                       "above = 10\n"
                       "hooks = [\"rollback\", \"rollbakc\"]\n") ==
              Strings{"23:22: unknown hook 'rollbakc' (did you mean 'rollback'?)"});
    }
    SECTION("script command as a string") {
        CHECK(errorsOf(kBase +
                       "[[hook]]\n"
                       "name = \"undo\"\n"
                       "type = \"script\"\n"
                       "command = \"/usr/local/bin/undo.sh --now\"\n") ==
              Strings{"21:11: command is an argv array, e.g. [\"/usr/local/bin/rollback.sh\", \"--now\"]; rollguard "
                      "never runs a shell"});
    }
    SECTION("latency metric on a source without latency") {
        CHECK(errorsOf(kBase +
                       "[[rule]]\n"
                       "name = \"r\"\n"
                       "source = \"app\"\n"
                       "metric = \"p99\"\n"
                       "above = \"500ms\"\n"
                       "hooks = [\"rollback\"]\n") ==
              Strings{"21:10: metric 'p99' needs latency, but source 'app' has no 'latency' field (add latency = { "
                      "field = \"duration_ms\", unit = \"ms\" })"});
    }
    SECTION("TOML syntax error") {
        const LoadResult r = parseConfig(kBase + "[[rule]]\nname = = \"r\"\n", kPath);
        CHECK_FALSE(r.ok());
        CHECK(diags(r, Diagnostic::Level::Error) ==
              Strings{"19:8: Error while parsing value: could not determine value type"});
    }
    SECTION("duplicate rule name, reported at the second") {
        CHECK(errorsOf(ruleWith("") +
                       "\n"                       // 25
                       "[[rule]]\n"               // 26
                       "severity = \"warning\"\n"  // 27
                       "name = \"r\"\n"           // 28
                       "source = \"app\"\n"
                       "metric = \"count\"\n"
                       "above = 10\n") == Strings{"28:8: duplicate rule name 'r' (first defined at 19:8)"});
    }
    SECTION("both above and below") {
        CHECK(errorsOf(ruleWith("below = 0.01")) ==
              Strings{"23:1: a rule takes exactly one of 'above' or 'below', not both"});
    }
    SECTION("neither above nor below") {
        CHECK(errorsOf(kBase +
                       "[[rule]]\n"
                       "name = \"r\"\n"
                       "source = \"app\"\n"
                       "metric = \"count\"\n"
                       "hooks = [\"rollback\"]\n") ==
              Strings{"18:1: missing threshold in [[rule]]: set exactly one of 'above' or 'below'"});
    }
}

TEST_CASE("every error in a config is reported in one go, in file order", "[config]") {
    const std::string text =
        "[agent]\n"                    // 1
        "tick = \"0s\"\n"              // 2
        "listen = \"localhost\"\n"     // 3
        "\n"                           // 4
        "[[source]]\n"                 // 5
        "name = \"app\"\n"             // 6
        "type = \"syslog\"\n"          // 7
        "paths = [\"a.log\"]\n"        // 8
        "\n"                           // 9
        "[[rule]]\n"                   // 10
        "name = \"r\"\n"               // 11
        "source = \"app\"\n"           // 12
        "metric = \"p99.9.9\"\n"       // 13
        "above = 1\n"                  // 14
        "windw = \"5m\"\n"             // 15
        "hooks = [\"nope\"]\n"         // 16
        "\n"                           // 17
        "[[hook]]\n"                   // 18
        "type = \"webhook\"\n"         // 19
        "url = \"ftp://x\"\n"          // 20
        "path = \"/etc/env\"\n";       // 21
    CHECK(errorsOf(text) ==
          Strings{
              "2:8: 'tick' must be greater than zero",
              "3:10: 'listen' must be \"host:port\" (e.g. \"127.0.0.1:9464\", \"[::1]:9464\") or \"\" to disable, got "
              "\"localhost\"",
              "7:8: unsupported source type 'syslog' (supported: json_log, prometheus, json, health, process, promql)",
              "13:10: unknown metric \"p99.9.9\" (did you mean 'p99'?) (expected count, rate, error_ratio, mean, min, max, stddev, value, "
              "increase, growth, a percentile such as p50, p99, p99.9 or p999, quantile with 'quantile = 0.995', "
              "or ratio with 'numerator' and 'denominator')",
              "15:1: unknown key 'windw' in [[rule]] (did you mean 'window'?)",
              "16:10: unknown hook 'nope'",
              "18:1: missing required key 'name' in [[hook]]",
              "20:7: 'url' must start with http:// or https://, got \"ftp://x\"",
              "21:1: 'path' is not valid for a hook of type 'webhook' (it belongs to env_file, json_file and "
              "toml_file hooks)",
          });
}

TEST_CASE("percentile metric names", "[config]") {
    const auto metricOf = [](const std::string& metric) {
        const LoadResult r = parseConfig(kBase +
                                             "[[rule]]\n"
                                             "name = \"r\"\n"
                                             "source = \"api\"\n"
                                             "metric = \"" +
                                             metric +
                                             "\"\n"
                                             "above = 1\n"
                                             "hooks = [\"rollback\"]\n",
                                         kPath);
        REQUIRE(r.ok());
        return r.config->rules[0].metric;
    };
    const std::vector<std::pair<std::string, double>> cases{
        {"p50", 0.5}, {"p90", 0.9}, {"p95", 0.95}, {"p99", 0.99}, {"p99.9", 0.999}, {"p999", 0.999},
        {"p9999", 0.9999}, {"p995", 0.995}, {"p5", 0.05}, {"p99.99", 0.9999}};
    for (const auto& [name, q] : cases) {
        INFO(name);
        const auto m = metricOf(name);
        CHECK(m.kind == MetricKind::Quantile);
        CHECK(m.quantile == Approx(q).epsilon(1e-12));
        CHECK(m.text == name);
    }
    CHECK(metricOf("mean").kind == MetricKind::Mean);
    CHECK(metricOf("min").kind == MetricKind::Min);
    CHECK(metricOf("max").kind == MetricKind::Max);
    CHECK(metricOf("count").kind == MetricKind::Count);
    CHECK(metricOf("rate").kind == MetricKind::Rate);

    const auto rule = [](const std::string& metric) {
        return kBase + "[[rule]]\nname = \"r\"\nsource = \"api\"\nmetric = \"" + metric +
               "\"\nabove = 1\nhooks = [\"rollback\"]\n";
    };
    CHECK(errorsOf(rule("p100")) == Strings{"21:10: metric \"p100\" is the maximum; use metric = \"max\""});
    CHECK(errorsOf(rule("p0")) ==
          Strings{"21:10: metric \"p0\" is not a percentile between 0 and 100 exclusive (use min or max for the "
                  "extremes)"});
    CHECK(errorsOf(rule("error_rate")).size() == 1);
    // One mistake, one error: a duration threshold on an unknown metric is not a second one.
    CHECK(errorsOf(kBase + "[[rule]]\nname = \"r\"\nsource = \"api\"\nmetric = \"p9x\"\nabove = \"1s\"\n"
                           "hooks = [\"rollback\"]\n")
              .size() == 1);
    CHECK(errorsOf(rule("error_rate"))[0].find("(did you mean 'error_ratio'?)") != std::string::npos);
}

TEST_CASE("latency thresholds: durations, seconds and the milliseconds warning", "[config]") {
    const auto rule = [](const std::string& threshold) {
        return kBase +
               "[[rule]]\n"             // 18
               "name = \"r\"\n"         // 19
               "source = \"api\"\n"     // 20
               "metric = \"mean\"\n"    // 21
               "above = " + threshold + "\n"  // 22
               "hooks = [\"rollback\"]\n";
    };
    LoadResult r = parseConfig(rule("\"250ms\""), kPath);
    REQUIRE(r.ok());
    CHECK(r.config->rules[0].threshold == 0.25);
    CHECK(warningsOf(rule("\"250ms\"")).empty());

    r = parseConfig(rule("0.3"), kPath);
    REQUIRE(r.ok());
    CHECK(r.config->rules[0].threshold == 0.3);

    r = parseConfig(rule("500"), kPath);
    REQUIRE(r.ok());  // a warning, not an error
    CHECK(r.config->rules[0].threshold == 500.0);
    CHECK(warningsOf(rule("500")) ==
          Strings{"22:9: 'above' = 500 is in seconds for latency metric 'mean' (a plain number means seconds); did "
                  "you mean \"500ms\"?"});
    CHECK(warningsOf(rule("60")).empty());

    CHECK(errorsOf(rule("\"fast\"")).size() == 1);
    CHECK(errorsOf(rule("true")) ==
          Strings{"22:9: 'above' must be a duration string like \"500ms\" or a number of seconds, got boolean"});

    // A duration is meaningless for a non-latency metric.
    CHECK(errorsOf(kBase + "[[rule]]\nname = \"r\"\nsource = \"app\"\nmetric = \"count\"\nabove = \"5s\"\n"
                           "hooks = [\"rollback\"]\n") == Strings{"22:9: 'above' must be a number, got string"});
    CHECK(errorsOf(kBase + "[[rule]]\nname = \"r\"\nsource = \"app\"\nmetric = \"error_ratio\"\nabove = 5\n"
                           "hooks = [\"rollback\"]\n") ==
          Strings{"22:9: 'above' for error_ratio is a fraction between 0 and 1 (0.05 = 5%), got 5"});
}

TEST_CASE("hook validation", "[config]") {
    const auto hook = [](const std::string& body) { return kBase + "[[hook]]\nname = \"h\"\n" + body; };
    // line 18 [[hook]], 19 name, body starts on 20
    CHECK(errorsOf(hook("type = \"script\"\ncommand = [\"x\"]\nurl = \"http://a\"\n")) ==
          Strings{"22:1: 'url' is not valid for a hook of type 'script' (it belongs to webhook and alertmanager hooks)"});
    CHECK(errorsOf(hook("type = \"env_file\"\npath = \"a.env\"\n")) ==
          Strings{"18:1: an env_file hook needs at least one key in 'set' or 'unset', e.g. set = { FEATURE_X = \"0\" }"});
    CHECK(errorsOf(hook("type = \"env_file\"\npath = \"a.env\"\nset = { \"BAD-NAME\" = \"1\" }\n")) ==
          Strings{"22:9: 'BAD-NAME' in 'set' is not a valid environment variable name"});
    CHECK(errorsOf(hook("type = \"env_file\"\npath = \"a.env\"\nset = { A = [1] }\n")) ==
          Strings{"22:13: values in 'set' must be strings, got array"});
    CHECK(errorsOf(hook("type = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\nretries = 21\n")) ==
          Strings{"22:11: 'retries' must be between 0 and 20, got 21"});
    CHECK(errorsOf(hook("type = \"pager\"\n")) ==
          Strings{"20:8: 'type' must be one of env_file, json_file, toml_file, webhook, script, alertmanager; got "
                  "\"pager\""});
    CHECK(errorsOf(hook("type = \"script\"\ncommand = []\n")) ==
          Strings{"21:11: 'command' must start with the program to run, e.g. [\"/usr/local/bin/rollback.sh\"]"});
    CHECK(errorsOf(hook("type = \"script\"\ncommand = [\"x\"]\ntimeout = \"0s\"\n")) ==
          Strings{"22:11: 'timeout' must be greater than zero"});
    CHECK(errorsOf(hook("type = \"script\"\ncommand = [\"x\"]\ntimout = \"1s\"\n")) ==
          Strings{"22:1: unknown key 'timout' in [[hook]] (did you mean 'timeout'?)"});
}

TEST_CASE("source validation", "[config]") {
    const auto source = [](const std::string& body) {
        return "[[source]]\nname = \"s\"\ntype = \"json_log\"\npaths = [\"x\"]\n" + body;  // body on line 5
    };
    CHECK(errorsOf(source("error = { field = \"status\", gte = 500, in = [\"x\"] }\n")) ==
          Strings{"5:40: 'error' takes exactly one of 'gte', 'ranges', 'in', 'equals', 'present', 'any' or 'all'; "
                  "'gte' is already set"});
    CHECK(errorsOf(source("error = { field = \"failed\", equals = false }\n")) ==
          Strings{"5:38: only 'equals = true' is supported: a line is an error when the field is true"});
    CHECK(errorsOf(source("latency = { fild = \"d\" }\n")) ==
          Strings{"5:11: missing required key 'field' in [[source]].latency (or 'start' and 'end' for the time "
                  "between two timestamps)",
                  "5:13: unknown key 'fild' in [[source]].latency (did you mean 'field'?)"});
    CHECK(errorsOf(source("latency = { field = \"d\", unit = \"sec\" }\n")) ==
          Strings{"5:33: 'unit' must be one of ns, us, ms, s; got \"sec\" (did you mean 's'?)"});
    CHECK(errorsOf(source("max_line_bytes = 0\n")) ==
          Strings{"5:18: 'max_line_bytes' must be between 1 and 67108864 (64 MiB), got 0"});
    CHECK(errorsOf(source("read_from = \"start\"\n")) ==
          Strings{"5:13: 'read_from' must be one of beginning, end; got \"start\""});
    CHECK(errorsOf("[source]\nname = \"s\"\n") ==
          Strings{"1:1: 'source' must be an array of tables: write [[source]], not [source]"});
    CHECK(errorsOf("[[source]]\nname = \"my app\"\ntype = \"json_log\"\npaths = [\"x\"]\n") ==
          Strings{"2:8: 'name' must use only letters, digits, '_', '.' and '-', got \"my app\""});
    CHECK(errorsOf("[agent]\nlog_level = \"info\"\n") ==
          Strings{"1:1: no [[source]] defined: rollguard needs at least one source to read"});
}

TEST_CASE("agent log_format is text or json", "[config]") {
    const auto formatOf = [](const std::string& agent) {
        const LoadResult r = parseConfig("[agent]\n" + agent + kBase, kPath);
        REQUIRE(r.ok());
        return r.config->agent.log_format;
    };
    CHECK(formatOf("") == LogFormat::Text);
    CHECK(formatOf("log_format = \"text\"\n") == LogFormat::Text);
    CHECK(formatOf("log_format = \"json\"\n") == LogFormat::Json);
    CHECK(formatOf("log_format = \"json\"\nlog_level = \"debug\"\n") == LogFormat::Json);

    CHECK(errorsOf("[agent]\nlog_format = \"yaml\"\n" + kBase) ==
          Strings{"2:14: 'log_format' must be one of text, json; got \"yaml\""});
    CHECK(errorsOf("[agent]\nlog_format = \"jsn\"\n" + kBase) ==
          Strings{"2:14: 'log_format' must be one of text, json; got \"jsn\" (did you mean 'json'?)"});
    CHECK(errorsOf("[agent]\nlog_format = \"JSON\"\n" + kBase) ==
          Strings{"2:14: 'log_format' must be one of text, json; got \"JSON\""});
    CHECK(errorsOf("[agent]\nlog_format = true\n" + kBase) ==
          Strings{"2:14: 'log_format' must be a string, got boolean"});
    CHECK(errorsOf("[agent]\nlog_formt = \"json\"\n" + kBase) ==
          Strings{"2:1: unknown key 'log_formt' in [agent] (did you mean 'log_format'?)"});
}

TEST_CASE("a critical rule without hooks and an unused hook are warnings", "[config]") {
    const std::string text = kBase +
                             "[[rule]]\n"           // 18
                             "name = \"r\"\n"
                             "source = \"app\"\n"
                             "metric = \"count\"\n"
                             "above = 10\n";
    CHECK(errorsOf(text).empty());
    CHECK(warningsOf(text) == Strings{"13:1: hook 'rollback' is not used by any rule",
                                      "18:1: critical rule 'r' has no hooks: it will fire but roll nothing back"});
}

TEST_CASE("parseConfig never throws on garbage", "[config]") {
    for (const std::string& text : {std::string("\xff\xfe\x00\x01", 4), std::string("[[[\n"), std::string("a = \"\n"),
                                   std::string("=\n"), std::string(10000, '[')}) {
        LoadResult r;
        REQUIRE_NOTHROW(r = parseConfig(text, kPath));
        CHECK_FALSE(r.ok());
        CHECK_FALSE(r.diagnostics.empty());
    }
}

TEST_CASE("${VAR} and ${VAR:-default} in strings come from the environment", "[config]") {
    ::setenv("RG_TEST_LOG_DIR", "/srv/logs", 1);
    ::setenv("RG_TEST_EMPTY", "", 1);
    ::unsetenv("RG_TEST_UNSET");
    const std::string text =
        "[agent]\n"
        "listen = \"127.0.0.1:${RG_TEST_UNSET:-9555}\"\n"
        "hostname = \"${RG_TEST_EMPTY:-fallback}-$${literal}\"\n"
        "[[source]]\n"
        "name = \"app\"\n"
        "type = \"json_log\"\n"
        "paths = [\"${RG_TEST_LOG_DIR}/*.log\"]\n"
        "[[rule]]\n"
        "name = \"r\"\n"
        "source = \"app\"\n"
        "metric = \"count\"\n"
        "above = 1\n"
        "hooks = [\"h\"]\n"
        "[[hook]]\n"
        "name = \"h\"\n"
        "type = \"webhook\"\n"
        "url = \"http://127.0.0.1:1/x\"\n"
        "headers = { X-Log-Dir = \"dir ${RG_TEST_LOG_DIR}\" }\n";
    const LoadResult r = parseConfig(text, kPath);
    REQUIRE(r.ok());
    CHECK(r.config->agent.listen == "127.0.0.1:9555");
    CHECK(r.config->agent.hostname == "fallback-${literal}");
    CHECK(r.config->sources[0].paths == Strings{"/srv/logs/*.log"});
    CHECK(r.config->hooks[0].headers == Pairs{{"X-Log-Dir", "dir /srv/logs"}});

    auto first = [](const std::string& agent_line) { return errorsOf("[agent]\n" + agent_line + "\n" + kBase).at(0); };
    CHECK(first("hostname = \"${RG_TEST_UNSET}\"") ==
          "2:12: environment variable RG_TEST_UNSET is not set (export it, or write ${RG_TEST_UNSET:-default})");
    CHECK(first("hostname = \"a ${oops\"").rfind("2:12: unterminated ${", 0) == 0);
    CHECK(first("hostname = \"${1BAD}\"").rfind("2:12: '${1BAD}' is not a valid environment reference", 0) == 0);
}

namespace {

/// A one-source config whose line 5 onwards is `body`.
std::string sourceWith(const std::string& body) {
    return "[[source]]\nname = \"s\"\ntype = \"json_log\"\npaths = [\"x\"]\n" + body;
}

LoadResult loadOk(const std::string& text) {
    LoadResult r = parseConfig(text, kPath);
    for (const auto& d : r.diagnostics) {
        if (d.level == Diagnostic::Level::Error) {
            INFO(d.format());
            CHECK(false);
        }
    }
    REQUIRE(r.ok());
    return r;
}

}  // namespace

TEST_CASE("source following keys: exclude, watch, rotate_wait", "[config]") {
    SECTION("values") {
        const LoadResult r = loadOk(sourceWith("exclude = [\"*.gz\", \"logs/old/*.jsonl\", \"/var/log/x-*.log\"]\n"
                                               "watch = \"poll\"\n"
                                               "rotate_wait = \"250ms\"\n"));
        const auto& s = r.config->sources[0];
        // A pattern without a slash matches file names and stays as written; one with a
        // slash is a path pattern, relative to the config file like `paths`.
        CHECK(s.exclude == Strings{"*.gz", "/etc/rollguard/logs/old/*.jsonl", "/var/log/x-*.log"});
        CHECK(s.watch == WatchMode::Poll);
        CHECK(s.rotate_wait == 250ms);
        CHECK(loadOk(sourceWith("watch = \"auto\"\nrotate_wait = \"0s\"\n")).config->sources[0].rotate_wait == 0s);
    }
    SECTION("errors") {
        CHECK(errorsOf(sourceWith("exclude = \"*.gz\"\n")) ==
              Strings{"5:11: 'exclude' must be an array of strings, got string"});
        CHECK(errorsOf(sourceWith("exclude = [\"*.gz\", 3]\n")) ==
              Strings{"5:20: elements of 'exclude' must be strings, got integer"});
        CHECK(errorsOf(sourceWith("exclude = [\"\"]\n")) == Strings{"5:12: 'exclude' must not contain an empty pattern"});
        CHECK(errorsOf(sourceWith("watch = \"inotify\"\n")) ==
              Strings{"5:9: 'watch' must be one of auto, poll; got \"inotify\""});
        CHECK(errorsOf(sourceWith("watch = \"pol\"\n")) ==
              Strings{"5:9: 'watch' must be one of auto, poll; got \"pol\" (did you mean 'poll'?)"});
        CHECK(errorsOf(sourceWith("rotate_wait = 5\n")) ==
              Strings{"5:15: 'rotate_wait' must be a duration string like \"5m\", got integer"});
        CHECK(errorsOf(sourceWith("rotate_wait = \"-1s\"\n")) ==
              Strings{"5:15: 'rotate_wait' is not a valid duration: \"-1s\" (use a number and a unit: ns, us, ms, s, "
                      "m, h, d; e.g. \"500ms\", \"30s\", \"1h30m\")"});
        CHECK(errorsOf(sourceWith("rotate_wiat = \"1s\"\n")) ==
              Strings{"5:1: unknown key 'rotate_wiat' in [[source]] (did you mean 'rotate_wait'?)"});
    }
}

TEST_CASE("latency from two timestamps", "[config]") {
    SECTION("start and end, default and explicit timestamp unit") {
        LoadResult r = loadOk(sourceWith("latency = { start = \"req.start\", end = \"req.end\" }\n"));
        REQUIRE(r.config->sources[0].latency.has_value());
        const auto& l = *r.config->sources[0].latency;
        CHECK(l.field.empty());
        CHECK(l.start_field == "req.start");
        CHECK(l.end_field == "req.end");
        CHECK(l.timestamp_unit == LatencyUnit::Seconds);
        r = loadOk(sourceWith("latency = { start = \"t0\", end = \"t1\", timestamp_unit = \"ns\" }\n"));
        CHECK(r.config->sources[0].latency->timestamp_unit == LatencyUnit::Nanoseconds);
        r = loadOk(sourceWith("[source.latency]\nstart = \"t0\"\nend = \"t1\"\ntimestamp_unit = \"ms\"\nmax = \"10m\"\n"));
        CHECK(r.config->sources[0].latency->timestamp_unit == LatencyUnit::Milliseconds);
        CHECK(r.config->sources[0].latency->highest == 10min);
    }
    SECTION("a rule may use latency metrics on a two-timestamp source") {
        loadOk(sourceWith("latency = { start = \"t0\", end = \"t1\" }\n"
                          "[[rule]]\nname = \"r\"\nseverity = \"warning\"\nsource = \"s\"\nmetric = \"p99\"\n"
                          "above = \"1s\"\n"));
    }
    SECTION("errors") {
        CHECK(errorsOf(sourceWith("latency = { field = \"d\", start = \"t0\", end = \"t1\" }\n")) ==
              Strings{"5:26: 'latency' takes either 'field' or 'start' and 'end' (two timestamps), not both"});
        CHECK(errorsOf(sourceWith("latency = { start = \"t0\" }\n")) ==
              Strings{"5:11: missing required key 'end' in [[source]].latency ('start' and 'end' go together: "
                      "latency = end - start)"});
        CHECK(errorsOf(sourceWith("latency = { end = \"t1\" }\n")) ==
              Strings{"5:11: missing required key 'start' in [[source]].latency ('start' and 'end' go together: "
                      "latency = end - start)"});
        CHECK(errorsOf(sourceWith("latency = { start = \"t\", end = \"t\" }\n")) ==
              Strings{"5:26: 'start' and 'end' must be two different fields, both are \"t\""});
        CHECK(errorsOf(sourceWith("latency = { start = \"a..b\", end = \"t1\" }\n")) ==
              Strings{"5:21: 'start' must be a dotted field path like \"request.start\", got \"a..b\""});
        CHECK(errorsOf(sourceWith("latency = { start = \"\", end = \"t1\" }\n")) ==
              Strings{"5:21: 'start' must be a dotted field path like \"request.start\", got \"\""});
        CHECK(errorsOf(sourceWith("latency = { start = \"t0\", end = 1 }\n")) ==
              Strings{"5:33: 'end' must be a string, got integer"});
        CHECK(errorsOf(sourceWith("latency = { start = \"t0\", end = \"t1\", timestamp_unit = \"sec\" }\n")) ==
              Strings{"5:56: 'timestamp_unit' must be one of ns, us, ms, s; got \"sec\" (did you mean 's'?)"});
        CHECK(errorsOf(sourceWith("latency = { start = \"t0\", end = \"t1\", unit = \"ms\" }\n")) ==
              Strings{"5:39: 'unit' is the unit of a 'field'; with 'start' and 'end' the latency is their difference "
                      "(use 'timestamp_unit' for numeric epoch timestamps)"});
        CHECK(errorsOf(sourceWith("latency = { field = \"d\", timestamp_unit = \"ms\" }\n")) ==
              Strings{"5:26: 'timestamp_unit' is only used with 'start' and 'end'; a 'field' takes 'unit'"});
        CHECK(errorsOf(sourceWith("latency = { unit = \"ms\" }\n")) ==
              Strings{"5:11: missing required key 'field' in [[source]].latency (or 'start' and 'end' for the time "
                      "between two timestamps)"});
        CHECK(errorsOf(sourceWith("latency = { start = \"t0\", ende = \"t1\" }\n")) ==
              Strings{"5:11: missing required key 'end' in [[source]].latency ('start' and 'end' go together: "
                      "latency = end - start)",
                      "5:27: unknown key 'ende' in [[source]].latency (did you mean 'end'?)"});
    }
}

TEST_CASE("error predicates: ranges, present, any, all", "[config]") {
    SECTION("ranges") {
        const LoadResult r = loadOk(sourceWith("error = { field = \"http.status\", ranges = [[500, 599], [429, 429.5]] }\n"));
        const ErrorPredicate& e = r.config->sources[0].error;
        CHECK(e.kind == ErrorPredicate::Kind::NumberInRanges);
        CHECK(e.field == "http.status");
        CHECK(e.ranges == std::vector<std::pair<double, double>>{{500.0, 599.0}, {429.0, 429.5}});
    }
    SECTION("present") {
        const LoadResult r = loadOk(sourceWith("error = { field = \"exception\", present = true }\n"));
        CHECK(r.config->sources[0].error.kind == ErrorPredicate::Kind::Present);
        CHECK(r.config->sources[0].error.field == "exception");
    }
    SECTION("nested any and all, inline and as arrays of tables") {
        LoadResult r = loadOk(sourceWith(
            "error = { any = [ { field = \"status\", ranges = [[500, 599]] },\n"
            "                  { all = [ { field = \"level\", in = [\"error\"] }, { field = \"retry\", equals = true } ] },\n"
            "                  { field = \"panic\", present = true } ] }\n"));
        const ErrorPredicate& e = r.config->sources[0].error;
        CHECK(e.kind == ErrorPredicate::Kind::Any);
        CHECK(e.field.empty());
        REQUIRE(e.terms.size() == 3);
        CHECK(e.terms[0].kind == ErrorPredicate::Kind::NumberInRanges);
        CHECK(e.terms[0].field == "status");
        CHECK(e.terms[0].location.line == 5);
        CHECK(e.terms[0].location.column == 19);
        CHECK(e.terms[1].kind == ErrorPredicate::Kind::All);
        REQUIRE(e.terms[1].terms.size() == 2);
        CHECK(e.terms[1].terms[0].kind == ErrorPredicate::Kind::StringIn);
        CHECK(e.terms[1].terms[0].in == Strings{"error"});
        CHECK(e.terms[1].terms[1].kind == ErrorPredicate::Kind::IsTrue);
        CHECK(e.terms[1].terms[1].field == "retry");
        CHECK(e.terms[2].kind == ErrorPredicate::Kind::Present);
        CHECK(e.terms[2].field == "panic");

        r = loadOk(sourceWith("[[source.error.all]]\nfield = \"status\"\ngte = 500\n"
                              "[[source.error.all]]\nfield = \"route\"\nin = [\"/pay\"]\n"));
        const ErrorPredicate& all = r.config->sources[0].error;
        CHECK(all.kind == ErrorPredicate::Kind::All);
        REQUIRE(all.terms.size() == 2);
        CHECK(all.terms[0].kind == ErrorPredicate::Kind::NumberAtLeast);
        CHECK(all.terms[0].gte == 500.0);
        CHECK(all.terms[1].kind == ErrorPredicate::Kind::StringIn);
    }
    SECTION("errors") {
        CHECK(errorsOf(sourceWith("error = { field = \"status\", ranges = [500, 599] }\n")) ==
              Strings{"5:39: each element of 'ranges' must be an inclusive [lo, hi] pair of numbers, e.g. [500, 599]; "
                      "got integer",
                      "5:44: each element of 'ranges' must be an inclusive [lo, hi] pair of numbers, e.g. [500, 599]; "
                      "got integer"});
        CHECK(errorsOf(sourceWith("error = { field = \"status\", ranges = [[599, 500]] }\n")) ==
              Strings{"5:39: a range in 'ranges' is [lo, hi] with lo <= hi, got [599, 500]"});
        CHECK(errorsOf(sourceWith("error = { field = \"status\", ranges = [[500, 599], [1, 2, 3]] }\n")) ==
              Strings{"5:51: each element of 'ranges' must be an inclusive [lo, hi] pair of numbers, e.g. [500, 599]; "
                      "got an array of 3"});
        CHECK(errorsOf(sourceWith("error = { field = \"status\", ranges = [[500, \"599\"]] }\n")) ==
              Strings{"5:45: 'ranges' must be a number, got string"});
        CHECK(errorsOf(sourceWith("error = { field = \"status\", ranges = [] }\n")) ==
              Strings{"5:38: 'ranges' must list at least one [lo, hi] pair, e.g. [[500, 599]]"});
        CHECK(errorsOf(sourceWith("error = { field = \"status\", ranges = \"5xx\" }\n")) ==
              Strings{"5:38: 'ranges' must be an array of [lo, hi] pairs, e.g. [[500, 599], [429, 429]], got string"});
        CHECK(errorsOf(sourceWith("error = { field = \"exception\", present = false }\n")) ==
              Strings{"5:42: only 'present = true' is supported: a line is an error when the field is there and not "
                      "null"});
        CHECK(errorsOf(sourceWith("error = { field = \"exception\", present = \"yes\" }\n")) ==
              Strings{"5:42: 'present' must be a boolean (true or false), got string"});
        CHECK(errorsOf(sourceWith("error = { present = true }\n")) ==
              Strings{"5:9: missing required key 'field' in [[source]].error"});
        CHECK(errorsOf(sourceWith("error = { any = [] }\n")) ==
              Strings{"5:17: 'any' must list at least one predicate, e.g. [{ field = \"status\", gte = 500 }]"});
        CHECK(errorsOf(sourceWith("error = { all = { field = \"a\", equals = true } }\n")) ==
              Strings{"5:17: 'all' must be an array of predicate tables, e.g. [{ field = \"status\", gte = 500 }, { "
                      "field = \"timeout\", equals = true }], got table"});
        CHECK(errorsOf(sourceWith("error = { any = [\"status\"] }\n")) ==
              Strings{"5:18: elements of 'any' must be predicate tables like { field = \"status\", gte = 500 }, got "
                      "string"});
        CHECK(errorsOf(sourceWith("error = { field = \"status\", any = [{ field = \"a\", equals = true }] }\n")) ==
              Strings{"5:11: 'field' is not used with 'any': each predicate in the list names its own field"});
        CHECK(errorsOf(sourceWith("error = { field = \"status\", gte = 500, present = true }\n")) ==
              Strings{"5:40: 'error' takes exactly one of 'gte', 'ranges', 'in', 'equals', 'present', 'any' or 'all'; "
                      "'gte' is already set"});
        // Errors inside nested predicates point into them and name where they are.
        CHECK(errorsOf(sourceWith("error = { any = [ { field = \"a\", equals = true },\n"
                                  "  { all = [ { field = \"b\", gte = 1 }, { feld = \"c\", present = true } ] } ] }\n")) ==
              Strings{"6:39: missing required key 'field' in [[source]].error.any[1].all[1]",
                      "6:41: unknown key 'feld' in [[source]].error.any[1].all[1] (did you mean 'field'?)"});
        CHECK(errorsOf(sourceWith("error = { all = [ { field = \"a\" } ] }\n")) ==
              Strings{"5:19: 'error' needs exactly one of 'gte', 'ranges', 'in', 'equals', 'present', 'any' or 'all', "
                      "e.g. { field = \"status\", gte = 500 }"});
    }
}

TEST_CASE("checkpoint_interval is a positive duration", "[config]") {
    const LoadResult r = parseConfig("[agent]\nstate_dir = \"/var/lib/rg\"\ncheckpoint_interval = \"250ms\"\n" + kBase, kPath);
    REQUIRE(r.ok());
    CHECK(r.config->agent.checkpoint_interval == 250ms);
    CHECK(r.config->agent.state_dir == "/var/lib/rg");
    CHECK(errorsOf("[agent]\ncheckpoint_interval = \"0s\"\n" + kBase).at(0) ==
          "2:23: 'checkpoint_interval' must be greater than zero");
}

TEST_CASE("evaluation_interval: at most 100 ms by default and on a grid that holds every tick", "[config]") {
    using rollguard::agent::evaluationInterval;
    const auto effective = [](const std::string& agent) {
        const LoadResult r = parseConfig("[agent]\n" + agent + "\n" + kBase, kPath);
        REQUIRE(r.ok());
        return evaluationInterval(r.config->agent);
    };
    CHECK(evaluationInterval(parseConfig(kBase, kPath).config->agent) == 100ms);
    CHECK(effective("tick = \"1s\"") == 100ms);
    CHECK(effective("tick = \"500ms\"") == 100ms);
    CHECK(effective("tick = \"250ms\"") == std::chrono::microseconds{62'500});
    CHECK(effective("tick = \"50ms\"") == 50ms);
    CHECK(effective("tick = \"1m\"") == 100ms);
    CHECK(effective("tick = \"1s\"\nevaluation_interval = \"250ms\"") == 250ms);
    CHECK(effective("tick = \"1s\"\nevaluation_interval = \"1s\"") == 1s);

    CHECK(errorsOf("[agent]\nevaluation_interval = \"300ms\"\n" + kBase) ==
          Strings{"2:23: 'evaluation_interval' = 300ms must divide 'tick' (1s) evenly, e.g. \"100ms\" for a tick "
                  "of 1s"});
    CHECK(errorsOf("[agent]\nevaluation_interval = \"2s\"\n" + kBase).size() == 1);
    CHECK(errorsOf("[agent]\nevaluation_interval = \"0s\"\n" + kBase).size() == 1);
}

TEST_CASE("preflight_interval and readiness_preflight load, with their defaults", "[config][preflight]") {
    const LoadResult defaults = parseConfig(kBase, kPath);
    REQUIRE(defaults.ok());
    CHECK(defaults.config->agent.preflight_interval == 1min);
    CHECK(defaults.config->agent.readiness_preflight == rollguard::agent::ReadinessPreflight::Critical);

    const LoadResult r =
        parseConfig("[agent]\npreflight_interval = \"30s\"\nreadiness_preflight = \"all\"\n" + kBase, kPath);
    REQUIRE(r.ok());
    CHECK(r.config->agent.preflight_interval == 30s);
    CHECK(r.config->agent.readiness_preflight == rollguard::agent::ReadinessPreflight::All);

    const LoadResult off =
        parseConfig("[agent]\npreflight_interval = \"0s\"\nreadiness_preflight = \"off\"\n" + kBase, kPath);
    REQUIRE(off.ok());
    CHECK(off.config->agent.preflight_interval == 0s);
    CHECK(off.config->agent.readiness_preflight == rollguard::agent::ReadinessPreflight::Off);
    CHECK(std::string(rollguard::agent::toString(rollguard::agent::ReadinessPreflight::Critical)) == "critical");
}

TEST_CASE("bad preflight_interval and readiness_preflight values are errors at their place", "[config][preflight]") {
    CHECK(errorsOf("[agent]\nreadiness_preflight = \"critcal\"\n" + kBase) ==
          Strings{"2:23: 'readiness_preflight' must be one of critical, all, off; got \"critcal\" (did you mean "
                  "'critical'?)"});
    CHECK(errorsOf("[agent]\nreadiness_preflight = true\n" + kBase).size() == 1);
    CHECK(errorsOf("[agent]\npreflight_interval = \"100ms\"\n" + kBase) ==
          Strings{"2:22: 'preflight_interval' must be \"0s\" (check at start and on reload only) or at least "
                  "\"1s\""});
    CHECK(errorsOf("[agent]\ntick = \"1s\"\npreflight_interval = \"soon\"\n" + kBase).at(0).rfind("3:22: ", 0) == 0);
    CHECK(errorsOf("[agent]\npreflight_intervall = \"1m\"\n" + kBase).at(0).find("preflight_interval") !=
          std::string::npos);
}

// ---- [[rule]] keys of issue #5 ----

TEST_CASE("rule: selections, baselines, comparison and timing load into typed values", "[config][rules]") {
    const std::string text = kBase + R"([[rule]]
name = "canary-p99"
severity = "warning"
source = "api"
metric = "p99"
above = "2x"
labels = { variant = "canary", route = "=~/api/.*", env = "!=dev", host = "!~test-.*", odd = "==x" }
group_by = ["route"]
max_groups = 20
baseline = { labels = { variant = "stable" } }
breaches = "3 of 5"
keep_firing_for = "2m"
no_data = "hold"
on_error = "breach"
error_budget = 3
delay = "1m"
repeat_interval = "1h"
dry_run = true
hooks = ["rollback"]

[[rule]]
name = "mw"
source = "api"
metric = "p50"
compare = "mann_whitney"
confidence = 0.99
max_increase = "+15%"
effect = "hodges_lehmann"
baseline = { labels = { variant = "stable" } }
hooks = ["rollback"]

[[rule]]
name = "learned"
source = "app"
metric = "error_ratio"
above = "+50%"
baseline = { learn = "10m" }
hooks = ["rollback"]

[[rule]]
name = "file"
source = "api"
metric = "ratio"
numerator = "p99"
denominator = "p50"
below = "-20%"
baseline = { file = "baseline.json", pointer = "/ratio" }
hooks = ["rollback"]

[[rule]]
name = "gauge"
source = "mem.rss_bytes"
metric = "growth"
above = 0.10
hooks = ["rollback"]

[[source]]
name = "mem"
type = "process"
command = "app"
)";
    const LoadResult r = parseConfig(text, kPath);
    INFO(diags(r, Diagnostic::Level::Error).size());
    REQUIRE(r.ok());
    const auto& rules = r.config->rules;
    REQUIRE(rules.size() == 5);

    const auto& c = rules[0];
    CHECK(c.threshold_kind == rollguard::rules::ThresholdKind::Factor);
    CHECK(c.threshold == 2.0);
    REQUIRE(c.selection.matchers.size() == 5);
    using Op = rollguard::rules::LabelMatcher::Op;
    // In label order (TOML tables are unordered).
    CHECK(c.selection.matchers[0].label == "env");
    CHECK(c.selection.matchers[0].op == Op::NotEqual);
    CHECK(c.selection.matchers[0].value == "dev");
    CHECK(c.selection.matchers[1].label == "host");
    CHECK(c.selection.matchers[1].op == Op::NotRegex);
    CHECK(c.selection.matchers[1].value == "test-.*");
    CHECK(c.selection.matchers[2].op == Op::Equal);
    CHECK(c.selection.matchers[2].value == "=x");
    CHECK(c.selection.matchers[3].label == "route");
    CHECK(c.selection.matchers[3].op == Op::Regex);
    CHECK(c.selection.matchers[3].value == "/api/.*");
    CHECK(c.selection.matchers[3].matches("/api/x"));
    CHECK(c.selection.matchers[4].label == "variant");
    CHECK(c.selection.matchers[4].op == Op::Equal);
    CHECK(c.selection.matchers[4].value == "canary");
    CHECK(c.selection.group_by == Strings{"route"});
    CHECK(c.selection.max_groups == 20);
    CHECK(c.baseline.kind == rollguard::rules::BaselineKind::Selection);
    REQUIRE(c.baseline.selection.matchers.size() == 1);
    CHECK(c.baseline.selection.matchers[0].value == "stable");
    CHECK(c.breaches_m == 3);
    CHECK(c.breaches_n == 5);
    CHECK(c.keep_firing_for == 2min);
    CHECK(c.no_data == rollguard::rules::GapPolicy::Hold);
    CHECK(c.on_error == rollguard::rules::GapPolicy::Breach);
    CHECK(c.error_budget == 3);
    CHECK(c.delay == 1min);
    CHECK(c.repeat_interval == 1h);
    CHECK(c.dry_run);

    const auto& mw = rules[1];
    CHECK(mw.compare.kind == rollguard::rules::CompareKind::MannWhitney);
    CHECK(mw.compare.confidence == 0.99);
    CHECK(mw.compare.max_increase == Approx(0.15));
    CHECK(mw.compare.effect == rollguard::rules::EffectKind::HodgesLehmann);

    CHECK(rules[2].threshold_kind == rollguard::rules::ThresholdKind::Percent);
    CHECK(rules[2].threshold == 0.5);
    CHECK(rules[2].baseline.kind == rollguard::rules::BaselineKind::Learned);
    CHECK(rules[2].baseline.learn == 10min);

    const auto& f = rules[3];
    CHECK(f.metric.kind == MetricKind::Ratio);
    CHECK(f.metric.text == "p99/p50");
    REQUIRE(f.metric.operands.size() == 2);
    CHECK(f.metric.operands[0].quantile == 0.99);
    CHECK(f.metric.operands[1].quantile == 0.5);
    CHECK(f.comparison == Comparison::Below);
    CHECK(f.threshold == -0.2);
    CHECK(f.baseline.kind == rollguard::rules::BaselineKind::File);
    CHECK(f.baseline.file == "/etc/rollguard/baseline.json");
    CHECK(f.baseline.pointer == "/ratio");

    CHECK(rules[4].metric.kind == MetricKind::Growth);
    CHECK(rules[4].threshold == 0.10);
    // Defaults of the new keys.
    CHECK(rules[4].selection.max_groups == 50);
    CHECK(rules[4].no_data == rollguard::rules::GapPolicy::Ok);
    CHECK(rules[4].on_error == rollguard::rules::GapPolicy::Hold);
    CHECK(rules[4].repeat_interval == 4h);
    CHECK_FALSE(rules[4].dry_run);
}

TEST_CASE("rule: errors in the new keys point at file:line:col", "[config][rules]") {
    CHECK(errorsOf(ruleWith("keep_firing = \"1m\"")) ==
          Strings{"23:1: unknown key 'keep_firing' in [[rule]] (did you mean 'keep_firing_for'?)"});
    CHECK(errorsOf(ruleWith("for = \"1m\"\nbreaches = \"3 of 5\"")) ==
          Strings{"24:12: a rule takes 'for' or 'breaches', not both"});
    CHECK(errorsOf(ruleWith("breaches = \"5 of 3\"")) ==
          Strings{"23:12: 'breaches' must read \"M of N\" with 1 <= M <= N <= 64, e.g. \"3 of 5\"; got \"5 of 3\""});
    CHECK(errorsOf(ruleWith("labels = { route = \"=~([\" }")).size() == 1);
    CHECK(errorsOf(ruleWith("labels = { route = \"=~([\" }"))[0].rfind(
              "23:20: label matcher 'route': invalid regular expression \"([\"", 0) == 0);
    CHECK(errorsOf(ruleWith("no_data = \"skip\"")) ==
          Strings{"23:11: 'no_data' must be one of ok, breach, hold; got \"skip\""});
    CHECK(errorsOf(ruleWith("baseline = { learn = \"10m\", file = \"b.json\" }")) ==
          Strings{"23:12: 'baseline' takes exactly one of labels (a second selection), learn (a warm-up duration) "
                  "or file (with pointer)"});
    CHECK(errorsOf(ruleWith("baseline = { learn = \"10m\" }")) ==
          Strings{"23:12: 'baseline' is only used with a relative threshold (\"2x\", \"+10%\") or 'compare'"});
    CHECK(errorsOf(ruleWith("confidence = 0.9")) ==
          Strings{"23:14: 'confidence' is only used with compare = \"mann_whitney\""});
    CHECK(errorsOf(ruleWith("group_by = [\"route\", \"route\"]")) ==
          Strings{"23:22: label 'route' is listed twice in 'group_by'"});

    // A relative threshold without a baseline; compare without a baseline selection.
    const std::string relative = kBase + R"([[rule]]
name = "r"
source = "api"
metric = "p99"
above = "2x"
hooks = ["rollback"]
)";
    CHECK(errorsOf(relative) ==
          Strings{"22:9: a relative threshold needs a 'baseline': labels = { ... } (a second selection), "
                  "learn = \"10m\" or file = \"...\""});
    const std::string compare = kBase + R"([[rule]]
name = "r"
source = "api"
metric = "p50"
compare = "mann_whitney"
hooks = ["rollback"]
)";
    CHECK(errorsOf(compare) == Strings{"22:11: compare = \"mann_whitney\" needs a baseline selection, e.g. "
                                       "baseline = { labels = { variant = \"stable\" } }"});
    const std::string ratio = kBase + R"([[rule]]
name = "r"
source = "app"
metric = "ratio"
numerator = "p99"
above = 2
hooks = ["rollback"]
)";
    CHECK(errorsOf(ratio) == Strings{"21:10: metric = \"ratio\" needs 'numerator' and 'denominator', e.g. "
                                     "numerator = \"p99\", denominator = \"p50\""});
    CHECK(errorsOf(ruleWith("numerator = \"p99\"")) ==
          Strings{"23:13: 'numerator' is only used with metric = \"ratio\""});
    CHECK(errorsOf(ruleWith("dry_run = \"yes\"")).size() == 1);
}

TEST_CASE("rule: warnings for a `for` shorter than the evaluation interval and repeat_interval on a critical",
          "[config][rules]") {
    CHECK(warningsOf(ruleWith("for = \"50ms\"")) ==
          Strings{"23:7: 'for' = 50ms is shorter than the evaluation interval (100ms): it fires at the first "
                  "evaluation after the breach"});
    CHECK(warningsOf(ruleWith("for = \"500ms\"")).empty());
    CHECK(warningsOf(ruleWith("repeat_interval = \"1h\"")) ==
          Strings{"23:19: 'repeat_interval' is only used by warning rules (a critical rule acts once per incident)"});
    CHECK(warningsOf(ruleWith("max_groups = 5")) == Strings{"23:14: 'max_groups' has no effect without 'group_by'"});
    CHECK(warningsOf(ruleWith("for = \"1s\"")).empty());
}

TEST_CASE("rule: a window longer than the store keeps is refused - one shorter than the tick warns", "[config][rules]") {
    CHECK(errorsOf(ruleWith("window = \"8d\"")) == Strings{"23:10: 'window' 8d is longer than the store keeps (7d)"});
    CHECK(errorsOf(ruleWith("window = \"7d\"")).empty());
    CHECK(warningsOf(ruleWith("window = \"500ms\"")) ==
          Strings{"23:10: 'window' 500ms is shorter than the tick (1s): some evaluations will see an empty window"});
}
