// Loading and validating scrape sources (prometheus, json, health, process, promql) and
// the rules that read their series.
#include <catch2/catch.hpp>

#include <map>

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "config_diags.h"
#include "rollguard/agent/config.h"
#include "rollguard/agent/rule_test.h"
#include "temp_dir.h"

using namespace std::chrono_literals;
using rollguard::agent::Config;
using rollguard::agent::Diagnostic;
using rollguard::agent::loadConfigFile;
using rollguard::agent::loadRuleTestFile;
using rollguard::agent::LoadResult;
using rollguard::agent::parseConfig;
using rollguard::agent::ProcessSelector;
using rollguard::agent::ScrapeSeriesConfig;
using rollguard::agent::ScrapeSourceConfig;
using rollguard::agent::scrapeStreams;
using rollguard::agent::ScrapeType;
using rollguard::agent::SeriesSelector;
using rollguard::rules::LabelMatcher;
using rollguard::rules::MetricKind;
using rollguard::testing::TempDir;
using rollguard::testing::writeFile;

namespace {

using Strings = std::vector<std::string>;
using Pairs = std::vector<std::pair<std::string, std::string>>;
using Kind = ScrapeSeriesConfig::Kind;
using Op = LabelMatcher::Op;

const std::string& kPath = rollguard::testing::kConfigPath;
using rollguard::testing::diags;
using rollguard::testing::errorsOf;

/// Warnings but the one about a config without rules (most tests have none).
Strings warningsOf(const std::string& text) {
    return rollguard::testing::warningsOf(text, "no [[rule]] defined");
}
/// A config that must load without errors; warnings are allowed (and returned by
/// warningsOf where a test cares).
Config load(const std::string& text) {
    const LoadResult r = parseConfig(text, kPath);
    for (const auto& d : r.diagnostics) {
        INFO(d.format());
        CHECK(d.level != Diagnostic::Level::Error);
    }
    REQUIRE(r.ok());
    return *r.config;
}

/// Lines 1-3: a prometheus source `m` whose line 4 is `line4`, then a series `s`
/// (lines 5-6) reading a gauge. Tests add keys on line 4 or append after line 6.
std::string promWith(const std::string& line4) {
    return "[[source]]\n"                     // 1
           "name = \"m\"\n"                   // 2
           "type = \"prometheus\"\n"          // 3
           + line4 + "\n" +                   // 4
           "[source.series.s]\n"              // 5
           "gauge = 'queue_depth'\n";         // 6
}

/// promWith plus `url` on line 4 and `line5` as the first key of series `s` (line 7).
std::string seriesWith(const std::string& line7, const std::string& kind = "gauge = 'queue_depth'") {
    return "[[source]]\n"                     // 1
           "name = \"m\"\n"                   // 2
           "type = \"prometheus\"\n"          // 3
           "url = \"http://127.0.0.1:9100/metrics\"\n"  // 4
           "[source.series.s]\n"              // 5
           + kind + "\n" +                    // 6
           line7 + "\n";                      // 7
}

/// The selector of a prometheus gauge `s`, or the error text.
SeriesSelector selectorOf(const std::string& toml_value) {
    const Config c = load(seriesWith("", "gauge = " + toml_value));
    REQUIRE(c.scrapes.size() == 1);
    REQUIRE(c.scrapes[0].series.size() == 1);
    return c.scrapes[0].series[0].selector;
}

/// A prometheus selector that does not parse: the one error ("line:col: message").
std::string selectorError(const std::string& toml_value) {
    const Strings errors = errorsOf(seriesWith("", "gauge = " + toml_value));
    REQUIRE(errors.size() == 1);
    return errors[0];
}

/// Lines 1-27: one source of each kind (log `app` with latency and a `route` label,
/// prometheus `router`, json `stats`, health `api`, process `proc`, promql `fleet`).
/// Tests append a [[rule]] from line 28 on.
const std::string kSources =
    "[[source]]\n"                                                     // 1
    "name = \"app\"\n"                                                 // 2
    "type = \"json_log\"\n"                                            // 3
    "paths = [\"app.jsonl\"]\n"                                        // 4
    "latency = { field = \"ms\" }\n"                                   // 5
    "labels = { route = \"route\" }\n"                                 // 6
    "[[source]]\n"                                                     // 7
    "name = \"router\"\n"                                              // 8
    "type = \"prometheus\"\n"                                          // 9
    "url = \"http://127.0.0.1:9100/metrics\"\n"                        // 10
    "series.lost = { counter = 'messages_lost_total', by = [\"queue\"] }\n"  // 11
    "series.latency = { histogram = 'request_seconds' }\n"             // 12
    "series.requests = { events = 'requests_total' }\n"                // 13
    "[[source]]\n"                                                     // 14
    "name = \"stats\"\n"                                               // 15
    "type = \"json\"\n"                                                // 16
    "path = \"stats.json\"\n"                                          // 17
    "series.depth = { gauge = \"/queue/depth\" }\n"                    // 18
    "[[source]]\n"                                                     // 19
    "name = \"api\"\n"                                                 // 20
    "type = \"health\"\n"                                              // 21
    "url = \"http://127.0.0.1:8080/healthz\"\n"                        // 22
    "[[source]]\n"                                                     // 23
    "name = \"proc\"\n"                                                // 24
    "type = \"process\"\n"                                             // 25
    "command = \"nginx\"\n"                                            // 26
    "\n";                                                              // 27

/// A rule on `source` with `metric` and threshold line `threshold` (lines 28-32) and
/// `extra` on line 33.
std::string ruleOn(const std::string& source, const std::string& metric, const std::string& threshold = "above = 1",
                   const std::string& extra = "") {
    return kSources +
           "[[rule]]\n"                                  // 28
           "name = \"r\"\n"                              // 29
           "source = \"" + source + "\"\n" +             // 30
           "metric = \"" + metric + "\"\n" +             // 31
           threshold + "\n" +                            // 32
           extra + "\n";                                 // 33
}

}  // namespace

TEST_CASE("scrape sources: one of each type with every key", "[config][scrape]") {
    const Config c = load(R"([[source]]
name = "router"
type = "prometheus"
url = "https://router:9100/metrics"
interval = "15s"
timeout = "3s"
jitter = false
max_bytes = 0
headers = { "X-Scope-OrgID" = "tenant-a", "Accept-Language" = "en" }
bearer_token_file = "secrets/token"
tls = { ca_file = "ca.pem", cert_file = "/etc/pki/client.pem", key_file = "client.key", insecure_skip_verify = true }

[source.series.lost]
counter = 'messages_lost_total{queue="main"}'
by = ["queue", "shard"]
max_label_sets = 20

[source.series.latency]
histogram = 'request_duration_seconds{route=~"/api/.*"}'
errors_above = "250ms"
unit = "ms"

[source.series.requests]
events = 'requests_total'
errors = 'requests_total{code=~"5.."}'

[[source]]
name = "stats"
type = "json"
url = "http://127.0.0.1:8080/stats.json"
basic_auth = { username = "rollguard", password_env = "STATS_PASSWORD" }
series = { depth = { gauge = "/queue/depth", unit = "" }, wait = { gauge = "/wait_ms", unit = "ms" }, done = { counter = "/jobs/done" }, jobs = { events = "/jobs/total", errors = "/jobs/failed" } }

[[source]]
name = "file"
type = "json"
path = "metrics.json"
interval = "1s"
series.ratio = { gauge = "/error_rate_percent", unit = "percent" }

[[source]]
name = "api"
type = "health"
url = "http://127.0.0.1:8080/healthz"
status = [200, 204, "3xx"]
body_contains = "ok"
bearer_token_env = "API_TOKEN"

[[source]]
name = "proc"
type = "process"
pid_file = "run/app.pid"
interval = "2s"
jitter = false

[[source]]
name = "fleet"
type = "promql"
url = "http://prometheus:9090"
interval = "30s"
series.errors = { query = 'sum by (job) (rate(http_requests_total{code=~"5.."}[5m]))', by = ["job"], max_label_sets = 5 }
series.p99 = { query = 'histogram_quantile(0.99, sum by (le) (rate(request_seconds_bucket[5m])))', unit = "s" }
)");
    REQUIRE(c.sources.empty());
    REQUIRE(c.scrapes.size() == 6);

    const ScrapeSourceConfig& router = *c.findScrape("router");
    CHECK(router.type == ScrapeType::Prometheus);
    CHECK(router.url == "https://router:9100/metrics");
    CHECK(router.interval == 15s);
    CHECK(router.timeout == 3s);
    CHECK_FALSE(router.jitter);
    CHECK(router.max_bytes == 0);
    CHECK(router.headers == Pairs{{"X-Scope-OrgID", "tenant-a"}, {"Accept-Language", "en"}});
    CHECK(router.bearer_token_file == "/etc/rollguard/secrets/token");
    CHECK(router.bearer_token_env.empty());
    CHECK(router.ca_file == "/etc/rollguard/ca.pem");
    CHECK(router.cert_file == "/etc/pki/client.pem");
    CHECK(router.key_file == "/etc/rollguard/client.key");
    CHECK(router.insecure_skip_verify);
    CHECK(router.location.line == 1);
    REQUIRE(router.series.size() == 3);  // in config order, not TOML's key order
    const auto& lost = router.series[0];
    CHECK(lost.name == "lost");
    CHECK(lost.kind == Kind::Counter);
    CHECK(lost.selector.metric == "messages_lost_total");
    CHECK(lost.selector.text == "messages_lost_total{queue=\"main\"}");
    REQUIRE(lost.selector.matchers.size() == 1);
    CHECK(lost.selector.matchers[0].label == "queue");
    CHECK(lost.selector.matchers[0].op == Op::Equal);
    CHECK(lost.selector.matchers[0].value == "main");
    CHECK(lost.by == Strings{"queue", "shard"});
    CHECK(lost.max_label_sets == 20);
    CHECK(lost.scale == 1.0);
    CHECK_FALSE(lost.errors);
    CHECK(lost.location.line == 13);
    const auto& latency = router.series[1];
    CHECK(latency.name == "latency");
    CHECK(latency.kind == Kind::Histogram);
    CHECK(latency.selector.metric == "request_duration_seconds");
    REQUIRE(latency.selector.matchers.size() == 1);
    CHECK(latency.selector.matchers[0].op == Op::Regex);
    CHECK(latency.selector.matchers[0].matches("/api/v1"));
    CHECK_FALSE(latency.selector.matchers[0].matches("/x/api/v1"));
    REQUIRE(latency.errors_above);
    CHECK(*latency.errors_above == Approx(0.25));
    CHECK(latency.scale == Approx(1e-3));
    const auto& requests = router.series[2];
    CHECK(requests.kind == Kind::Events);
    CHECK(requests.selector.metric == "requests_total");
    CHECK(requests.selector.matchers.empty());
    REQUIRE(requests.errors);
    CHECK(requests.errors->metric == "requests_total");
    REQUIRE(requests.errors->matchers.size() == 1);
    CHECK(requests.errors->matchers[0].matches("503"));
    CHECK_FALSE(requests.errors->matchers[0].matches("200"));

    const ScrapeSourceConfig& stats = *c.findScrape("stats");
    CHECK(stats.type == ScrapeType::Json);
    CHECK(stats.url == "http://127.0.0.1:8080/stats.json");
    CHECK(stats.path.empty());
    CHECK(stats.basic_username == "rollguard");
    CHECK(stats.basic_password_env == "STATS_PASSWORD");
    CHECK(stats.basic_password_file.empty());
    REQUIRE(stats.series.size() == 4);
    CHECK(stats.series[0].name == "depth");
    CHECK(stats.series[0].selector.metric == "/queue/depth");
    CHECK(stats.series[0].selector.text == "/queue/depth");
    CHECK(stats.series[0].scale == 1.0);
    CHECK(stats.series[1].name == "wait");
    CHECK(stats.series[1].scale == Approx(1e-3));
    CHECK(stats.series[2].kind == Kind::Counter);
    CHECK(stats.series[3].kind == Kind::Events);
    REQUIRE(stats.series[3].errors);
    CHECK(stats.series[3].errors->metric == "/jobs/failed");

    const ScrapeSourceConfig& file = *c.findScrape("file");
    CHECK(file.url.empty());
    CHECK(file.path == "/etc/rollguard/metrics.json");
    CHECK(file.interval == 1s);
    CHECK(file.timeout == 1s);
    REQUIRE(file.series.size() == 1);
    CHECK(file.series[0].scale == Approx(0.01));

    const ScrapeSourceConfig& api = *c.findScrape("api");
    CHECK(api.type == ScrapeType::Health);
    CHECK(api.status == std::vector<std::pair<int, int>>{{200, 200}, {204, 204}, {300, 399}});
    CHECK(api.body_contains == "ok");
    CHECK(api.bearer_token_env == "API_TOKEN");
    CHECK(api.series.empty());

    const ScrapeSourceConfig& proc = *c.findScrape("proc");
    CHECK(proc.type == ScrapeType::Process);
    CHECK(proc.process.kind == ProcessSelector::PidFile);
    CHECK(proc.process.value == "/etc/rollguard/run/app.pid");
    CHECK(proc.interval == 2s);
    CHECK_FALSE(proc.jitter);
    CHECK(proc.url.empty());

    const ScrapeSourceConfig& fleet = *c.findScrape("fleet");
    CHECK(fleet.type == ScrapeType::Promql);
    CHECK(fleet.timeout == 10s);
    REQUIRE(fleet.series.size() == 2);
    CHECK(fleet.series[0].name == "errors");
    CHECK(fleet.series[0].kind == Kind::Query);
    CHECK(fleet.series[0].query == "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m]))");
    CHECK(fleet.series[0].by == Strings{"job"});
    CHECK(fleet.series[0].max_label_sets == 5);
    CHECK(fleet.series[1].name == "p99");
}

TEST_CASE("scrape sources: defaults", "[config][scrape]") {
    const Config c = load(promWith("url = \"http://127.0.0.1:9100/metrics\""));
    REQUIRE(c.scrapes.size() == 1);
    const ScrapeSourceConfig& m = c.scrapes[0];
    CHECK(m.name == "m");
    CHECK(m.interval == 5s);
    CHECK(m.timeout == 5s);
    CHECK(m.jitter);
    CHECK(m.max_bytes == 10485760);
    CHECK(m.headers.empty());
    CHECK(m.bearer_token_file.empty());
    CHECK(m.basic_username.empty());
    CHECK(m.ca_file.empty());
    CHECK_FALSE(m.insecure_skip_verify);
    REQUIRE(m.series.size() == 1);
    CHECK(m.series[0].kind == Kind::Gauge);
    CHECK(m.series[0].scale == 1.0);
    CHECK(m.series[0].by.empty());
    CHECK(m.series[0].max_label_sets == 100);
    CHECK_FALSE(m.series[0].errors_above);

    // The timeout defaults to the interval, at most 10 s.
    CHECK(load(promWith("url = \"http://h/\"\ninterval = \"30s\"")).scrapes[0].timeout == 10s);
    CHECK(load(promWith("url = \"http://h/\"\ninterval = \"250ms\"")).scrapes[0].timeout == 250ms);

    const Config health = load("[[source]]\nname = \"h\"\ntype = \"health\"\nurl = \"http://h/healthz\"\n");
    CHECK(health.scrapes[0].status.empty());
    CHECK(health.scrapes[0].body_contains.empty());
    const Config proc = load("[[source]]\nname = \"p\"\ntype = \"process\"\ncommand = \"nginx\"\n");
    CHECK(proc.scrapes[0].process.kind == ProcessSelector::Name);
    CHECK(proc.scrapes[0].process.value == "nginx");
    CHECK(proc.scrapes[0].interval == 5s);
    CHECK(proc.scrapes[0].jitter);
}

TEST_CASE("scrape sources: the source type and its keys", "[config][scrape]") {
    CHECK(errorsOf("[[source]]\nname = \"m\"\ntype = \"promethus\"\npaths = [\"x\"]\n") ==
          Strings{"3:8: unsupported source type 'promethus' (did you mean 'prometheus'?) (supported: json_log, "
                  "prometheus, json, health, process, promql)"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\npid_file = \"x.pid\"")) ==
          Strings{"5:1: 'pid_file' is only used by process sources"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\npaths = [\"x\"]")) ==
          Strings{"5:1: 'paths' is only used by json_log sources"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nstatus = [200]")) ==
          Strings{"5:1: 'status' is only used by health sources"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nintervall = \"5s\"")) ==
          Strings{"5:1: unknown key 'intervall' in [[source]] of type prometheus (did you mean 'interval'?)"});
    CHECK(errorsOf("[[source]]\nname = \"a\"\ntype = \"json_log\"\npaths = [\"x\"]\nurl = \"http://h/\"\n") ==
          Strings{"5:1: 'url' is only used by prometheus, json, health and promql sources"});
    CHECK(errorsOf("[[source]]\nname = \"h\"\ntype = \"health\"\nurl = \"http://h/\"\nseries.x = { gauge = 'x' }\n") ==
          Strings{"5:1: 'series' is only used by prometheus, json and promql sources"});
    // Process sources read /proc: none of the HTTP keys.
    CHECK(errorsOf("[[source]]\nname = \"p\"\ntype = \"process\"\ncommand = \"nginx\"\nurl = \"http://h/\"\n"
                   "timeout = \"1s\"\nheaders = { A = \"b\" }\ntls = { ca_file = \"x\" }\nmax_bytes = 1\n"
                   "bearer_token_file = \"t\"\nbasic_auth = { username = \"u\" }\n") ==
          Strings{
              "5:1: 'url' is not used by a process source (it reads /proc, not a URL)",
              "6:1: 'timeout' is not used by a process source (it reads /proc, not a URL)",
              "7:1: 'headers' is not used by a process source (it reads /proc, not a URL)",
              "8:1: 'tls' is not used by a process source (it reads /proc, not a URL)",
              "9:1: 'max_bytes' is not used by a process source (it reads /proc, not a URL)",
              "10:1: 'bearer_token_file' is not used by a process source (it reads /proc, not a URL)",
              "11:1: 'basic_auth' is not used by a process source (it reads /proc, not a URL)",
          });
    // Source names share one namespace with json_log sources.
    CHECK(errorsOf("[[source]]\nname = \"m\"\ntype = \"json_log\"\npaths = [\"x\"]\n" + promWith("url = \"http://h/\"")) ==
          Strings{"6:8: duplicate source name 'm' (first defined at 2:8)"});
}

TEST_CASE("scrape sources: url, interval, timeout, jitter, max_bytes", "[config][scrape]") {
    CHECK(errorsOf(promWith("")) == Strings{"1:1: missing required key 'url' in [[source]] of type prometheus"});
    CHECK(errorsOf("[[source]]\nname = \"h\"\ntype = \"health\"\n") ==
          Strings{"1:1: missing required key 'url' in [[source]] of type health"});
    CHECK(errorsOf(promWith("url = \"ftp://h/metrics\"")) ==
          Strings{"4:7: 'url' must start with http:// or https:// and name a host, got \"ftp://h/metrics\""});
    CHECK(errorsOf(promWith("url = \"http://\"")) ==
          Strings{"4:7: 'url' must start with http:// or https:// and name a host, got \"http://\""});
    CHECK(errorsOf(promWith("url = \"http://h/a b\"")) ==
          Strings{"4:7: 'url' must not contain spaces or line breaks (percent-encode them), got \"http://h/a b\""});
    CHECK(errorsOf(promWith("url = \"http://h/\"\ninterval = \"50ms\"")) ==
          Strings{"5:12: 'interval' must be at least 100ms, got 50ms"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\ninterval = \"0s\"")) ==
          Strings{"5:12: 'interval' must be greater than zero"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\ninterval = 5")) ==
          Strings{"5:12: 'interval' must be a duration string like \"5m\", got integer"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\ninterval = \"5s\"\ntimeout = \"6s\"")) ==
          Strings{"6:11: timeout must not exceed interval (6s > 5s)"});
    CHECK(load(promWith("url = \"http://h/\"\ninterval = \"5s\"\ntimeout = \"5s\"")).scrapes[0].timeout == 5s);
    CHECK(errorsOf(promWith("url = \"http://h/\"\njitter = \"yes\"")) ==
          Strings{"5:10: 'jitter' must be a boolean (true or false), got string"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nmax_bytes = -1")) ==
          Strings{"5:13: 'max_bytes' must be at least 0 (0 = no cap), got -1"});
    CHECK(load(promWith("url = \"http://h/\"\nmax_bytes = 1024")).scrapes[0].max_bytes == 1024);
    // A promql URL is the API base.
    CHECK(warningsOf("[[source]]\nname = \"f\"\ntype = \"promql\"\nurl = \"http://p:9090/api/v1/query\"\n"
                     "series.x = { query = 'up' }\n") ==
          Strings{"4:7: 'url' of a promql source is the API base URL (e.g. \"http://prometheus:9090\"): queries go "
                  "to <url>/api/v1/query"});
}

TEST_CASE("scrape sources: json takes url or path", "[config][scrape]") {
    const std::string head = "[[source]]\nname = \"j\"\ntype = \"json\"\n";
    const std::string series = "series.x = { gauge = \"/x\" }\n";
    CHECK(errorsOf(head + series) ==
          Strings{"1:1: a json source needs 'url' (a document fetched over HTTP) or 'path' (a local JSON file)"});
    CHECK(errorsOf(head + "url = \"http://h/x.json\"\npath = \"x.json\"\n" + series) ==
          Strings{"5:1: a json source takes exactly one of 'url' or 'path', not both"});
    CHECK(errorsOf(head + "path = \"\"\n" + series) == Strings{"4:8: 'path' must not be empty"});
    CHECK(errorsOf(head + "path = \"x.json\"\nheaders = { A = \"b\" }\ntls = { ca_file = \"ca\" }\n" + series) ==
          Strings{
              "5:1: 'headers' is only used with 'url' (this json source reads a file)",
              "6:1: 'tls' is only used with 'url' (this json source reads a file)",
          });
    const Config c = load(head + "path = \"/var/lib/app/metrics.json\"\nmax_bytes = 4096\n" + series);
    CHECK(c.scrapes[0].path == "/var/lib/app/metrics.json");
    CHECK(c.scrapes[0].max_bytes == 4096);
    // A file-based json source has no "up" series: only a scrape that can fail has one.
    CHECK(scrapeStreams(c.scrapes[0]).size() == 1);
}

TEST_CASE("scrape sources: headers", "[config][scrape]") {
    CHECK(errorsOf(promWith("url = \"http://h/\"\nheaders = { Authorization = \"Bearer x\" }")) ==
          Strings{"5:13: 'Authorization' must not be set in 'headers' (a secret in the config): use "
                  "bearer_token_file/_env or basic_auth"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nheaders = { authorization = \"Bearer x\" }")).size() == 1);
    CHECK(errorsOf(promWith("url = \"http://h/\"\nheaders = { Cookie = \"s=1\", Proxy-Authorization = \"x\" }")) ==
          Strings{"5:13: 'Cookie' must not be set in 'headers' (a secret in the config): use "
                  "bearer_token_file/_env or basic_auth",
                  "5:29: 'Proxy-Authorization' must not be set in 'headers' (a secret in the config): use "
                  "bearer_token_file/_env or basic_auth"});
    CHECK(errorsOf(promWith("url = \"http://alice:s3cret@h:9100/metrics\"")) ==
          Strings{"4:7: 'url' must not contain a user name or password (\"user:password@\"): use "
                  "bearer_token_file/_env or basic_auth"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nheaders = { \"X-A\" = \"a\\r\\nX-B: b\" }")) ==
          Strings{"5:21: values in 'headers' must not contain line breaks"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nheaders = { \"X-A\\nB\" = \"a\" }")) ==
          Strings{"5:13: 'X-A\nB' in 'headers' is not a valid HTTP header name"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nheaders = \"X-A: a\"")) ==
          Strings{"5:11: 'headers' must be a table of strings, e.g. { NAME = \"value\" }, got string"});
}

TEST_CASE("scrape sources: bearer token and basic auth", "[config][scrape]") {
    CHECK(errorsOf(promWith("url = \"http://h/\"\nbearer_token = \"s3cr3t\"")) ==
          Strings{"5:1: 'bearer_token' must not be written in the config (it would end up in backups and diffs): "
                  "use bearer_token_file or bearer_token_env"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nbearer_token_file = \"t\"\nbearer_token_env = \"T\"")) ==
          Strings{"6:20: set either 'bearer_token_file' or 'bearer_token_env', not both"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nbearer_token_env = \"1T\"")) ==
          Strings{"5:20: 'bearer_token_env' must be an environment variable name, got \"1T\""});
    CHECK(load(promWith("url = \"http://h/\"\nbearer_token_env = \"TOKEN\"")).scrapes[0].bearer_token_env == "TOKEN");

    const Config c = load(promWith("url = \"http://h/\"\nbasic_auth = { username = \"u\", password_file = \"pw\" }"));
    CHECK(c.scrapes[0].basic_username == "u");
    CHECK(c.scrapes[0].basic_password_file == "/etc/rollguard/pw");
    CHECK(errorsOf(promWith("url = \"http://h/\"\nbasic_auth = { username = \"u\", password = \"pw\" }")) ==
          Strings{"5:32: 'password' must not be written in the config (it would end up in backups and diffs): use "
                  "password_file or password_env"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nbasic_auth = { password_env = \"PW\" }")) ==
          Strings{"5:14: missing required key 'username' in 'basic_auth'"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nbasic_auth = { username = \"u\" }")) ==
          Strings{"5:14: 'basic_auth' needs 'password_file' or 'password_env'"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nbasic_auth = { username = \"u:v\", password_env = \"PW\" }")) ==
          Strings{"5:27: 'username' must not contain ':' or line breaks (RFC 7617)"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nbasic_auth = { username = \"u\", password_file = \"pw\", "
                            "password_env = \"PW\" }")) ==
          Strings{"5:69: set either 'password_file' or 'password_env', not both"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nbasic_auth = { username = \"u\", pasword_env = \"PW\" }")) ==
          Strings{"5:14: 'basic_auth' needs 'password_file' or 'password_env'",
                  "5:32: unknown key 'pasword_env' in 'basic_auth' (did you mean 'password_env'?)"});
    CHECK(errorsOf(promWith("url = \"http://h/\"\nbearer_token_file = \"t\"\n"
                            "basic_auth = { username = \"u\", password_env = \"PW\" }")) ==
          Strings{"6:14: set either 'basic_auth' or a bearer token (bearer_token_file/_env), not both"});
}

TEST_CASE("scrape sources: tls", "[config][scrape]") {
    CHECK(errorsOf(promWith("url = \"https://h/\"\ntls = { cert_file = \"c.pem\" }")) ==
          Strings{"5:21: 'cert_file' and 'key_file' go together (a client certificate and its key); 'key_file' is "
                  "missing"});
    CHECK(errorsOf(promWith("url = \"https://h/\"\ntls = { key_file = \"c.key\" }")) ==
          Strings{"5:20: 'cert_file' and 'key_file' go together (a client certificate and its key); 'cert_file' is "
                  "missing"});
    CHECK(errorsOf(promWith("url = \"https://h/\"\ntls = { cafile = \"c.pem\" }")) ==
          Strings{"5:9: unknown key 'cafile' in 'tls' (did you mean 'ca_file'?)"});
    CHECK(errorsOf(promWith("url = \"https://h/\"\ntls = { insecure_skip_verify = 1 }")) ==
          Strings{"5:32: 'insecure_skip_verify' must be a boolean (true or false), got integer"});
    CHECK(errorsOf(promWith("url = \"https://h/\"\ntls = { ca_file = \"\" }")) ==
          Strings{"5:19: 'ca_file' must not be empty"});
    CHECK(warningsOf(promWith("url = \"http://h/\"\ntls = { ca_file = \"ca.pem\" }")) ==
          Strings{"5:7: 'tls' has no effect on an http:// URL (use https://)"});
    CHECK(warningsOf(promWith("url = \"https://h/\"\ntls = { ca_file = \"ca.pem\" }")).empty());
}

TEST_CASE("scrape series: names, kinds and keys", "[config][scrape]") {
    const std::string head = "[[source]]\nname = \"m\"\ntype = \"prometheus\"\nurl = \"http://h/\"\n";
    CHECK(errorsOf(head) == Strings{"1:1: no series: add [source.series.NAME] with what to read, e.g. counter = "
                                    "'messages_lost_total'"});
    CHECK(errorsOf(head + "series = {}\n") == Strings{"5:10: no series: add [source.series.NAME] with what to read, "
                                                      "e.g. counter = 'messages_lost_total'"});
    CHECK(errorsOf(head + "series = 'x'\n") ==
          Strings{"5:10: 'series' must be a table of named series, e.g. [source.series.NAME] with counter = "
                  "'messages_lost_total', got string"});
    CHECK(errorsOf(head + "series.up = { gauge = 'x' }\n") ==
          Strings{"5:8: series name 'up' is reserved (rollguard's own 'up' and 'checks' series)"});
    CHECK(errorsOf(head + "series.checks = { gauge = 'x' }\n") ==
          Strings{"5:8: series name 'checks' is reserved (rollguard's own 'up' and 'checks' series)"});
    CHECK(errorsOf(head + "series.\"9x\" = { gauge = 'x' }\n") ==
          Strings{"5:8: series name \"9x\" must match [a-zA-Z_][a-zA-Z0-9_]*"});
    CHECK(errorsOf(head + "series.x = 'x'\n") ==
          Strings{"5:12: series 'x' must be a table, e.g. { counter = 'messages_lost_total' }, got string"});
    CHECK(errorsOf(head + "[source.series.x]\nby = [\"a\"]\n") ==
          Strings{"5:1: series 'x' needs exactly one of 'gauge', 'counter', 'events' or 'histogram'"});
    CHECK(errorsOf(head + "[source.series.x]\ngauge = 'a'\ncounter = 'b'\n") ==
          Strings{"7:1: series 'x' takes exactly one of 'gauge', 'counter', 'events' or 'histogram'; 'gauge' is "
                  "already set"});
    CHECK(errorsOf(head + "[source.series.x]\ngauge = 'a'\nquery = 'up'\n") ==
          Strings{"7:1: 'query' is only used by promql series"});
    CHECK(errorsOf(head + "[source.series.x]\ngauge = 'a'\nlabels = ['q']\n") ==
          Strings{"7:1: unknown key 'labels' in series 'x'"});
    CHECK(errorsOf(head + "[source.series.x]\ngauge = 3\n") ==
          Strings{"6:9: 'gauge' must be a series selector string like 'http_requests_total{code=~\"5..\"}', got "
                  "integer"});
    // The order of the series is the order written.
    const Config c = load(head + "series.b = { gauge = 'b' }\nseries.a = { counter = 'a' }\n");
    REQUIRE(c.scrapes[0].series.size() == 2);
    CHECK(c.scrapes[0].series[0].name == "b");
    CHECK(c.scrapes[0].series[1].name == "a");
}

TEST_CASE("scrape series: errors, errors_above, unit, by, max_label_sets", "[config][scrape]") {
    CHECK(errorsOf(seriesWith("errors = 'x'")) ==
          Strings{"7:10: 'errors' is only used with 'events' (the failed ones among the counted events)"});
    CHECK(errorsOf(seriesWith("errors = 'x{'", "events = 'x'")) ==
          Strings{"7:13: invalid selector in 'errors': missing '}'"});
    CHECK(errorsOf(seriesWith("errors_above = \"1s\"")) ==
          Strings{"7:16: 'errors_above' is only used with 'histogram'"});
    const std::string histogram = "histogram = 'request_seconds'";
    CHECK(*load(seriesWith("errors_above = 2", histogram)).scrapes[0].series[0].errors_above == 2.0);
    CHECK(*load(seriesWith("errors_above = 0.5", histogram)).scrapes[0].series[0].errors_above == 0.5);
    CHECK(*load(seriesWith("errors_above = \"1m\"", histogram)).scrapes[0].series[0].errors_above == 60.0);
    CHECK(errorsOf(seriesWith("errors_above = -1", histogram)) ==
          Strings{"7:16: 'errors_above' must not be negative, got -1"});
    CHECK(errorsOf(seriesWith("errors_above = \"fast\"", histogram)) ==
          Strings{"7:16: 'errors_above' is not a valid duration: \"fast\" (use a number and a unit: ns, us, ms, s, "
                  "m, h, d; e.g. \"500ms\", \"30s\", \"1h30m\")"});
    CHECK(errorsOf(seriesWith("errors_above = true", histogram)) ==
          Strings{"7:16: 'errors_above' must be a duration string like \"1s\" or a number of seconds, got boolean"});

    const auto scaleOf = [](const std::string& unit) {
        return load(seriesWith("unit = \"" + unit + "\"")).scrapes[0].series[0].scale;
    };
    CHECK(scaleOf("s") == 1.0);
    CHECK(scaleOf("ms") == Approx(1e-3));
    CHECK(scaleOf("us") == Approx(1e-6));
    CHECK(scaleOf("ns") == Approx(1e-9));
    CHECK(scaleOf("percent") == Approx(0.01));
    CHECK(scaleOf("") == 1.0);
    CHECK(errorsOf(seriesWith("unit = \"msec\"")) ==
          Strings{"7:8: 'unit' must be one of s, ms, us, ns, percent or \"\" (as read); got \"msec\" (did you mean "
                  "'ms'?)"});
    CHECK(errorsOf(seriesWith("unit = \"ms\"", "events = 'x'")) ==
          Strings{"7:8: 'unit' is not used with 'events': events are counted"});
    CHECK(errorsOf(seriesWith("unit = \"percent\"", histogram)) ==
          Strings{"7:8: a histogram's 'unit' is that of its 'le' bounds: s, ms, us or ns"});

    CHECK(load(seriesWith("by = [\"route\", \"code\"]")).scrapes[0].series[0].by == Strings{"route", "code"});
    CHECK(errorsOf(seriesWith("by = [\"route\", \"route\"]")) ==
          Strings{"7:16: label 'route' is listed twice in 'by'"});
    CHECK(errorsOf(seriesWith("by = [\"a-b\"]")) ==
          Strings{"7:7: 'a-b' in 'by' is not a valid label name (letters, digits and '_', not starting with a digit "
                  "or \"__\")"});
    CHECK(errorsOf(seriesWith("by = [\"__name__\"]")).size() == 1);
    CHECK(errorsOf(seriesWith("by = [\"le\"]", histogram)) ==
          Strings{"7:7: 'le' is the histogram's bucket bound, not a label to keep"});
    CHECK(errorsOf(seriesWith("by = \"route\"")) == Strings{"7:6: 'by' must be an array of strings, got string"});
    CHECK(load(seriesWith("max_label_sets = 7\nby = [\"a\"]")).scrapes[0].series[0].max_label_sets == 7);
    CHECK(errorsOf(seriesWith("max_label_sets = 0\nby = [\"a\"]")) ==
          Strings{"7:18: 'max_label_sets' must be between 1 and 100000, got 0"});
    CHECK(warningsOf(seriesWith("max_label_sets = 7")) == Strings{"7:18: 'max_label_sets' has no effect without 'by'"});
}

TEST_CASE("scrape series: json pointers and promql queries", "[config][scrape]") {
    const std::string json = "[[source]]\nname = \"j\"\ntype = \"json\"\nurl = \"http://h/s.json\"\n[source.series.x]\n";
    CHECK(errorsOf(json + "gauge = \"queue/depth\"\n") ==
          Strings{"6:9: 'gauge' must be a JSON Pointer starting with '/', e.g. \"/queue/depth\"; got \"queue/depth\""});
    CHECK(errorsOf(json + "gauge = \"\"\n") ==
          Strings{"6:9: 'gauge' must be a JSON Pointer starting with '/', e.g. \"/queue/depth\"; got \"\""});
    CHECK(errorsOf(json + "gauge = \"/a~2\"\n").size() == 1);
    CHECK(load(json + "gauge = \"/a~1b/0\"\n").scrapes[0].series[0].selector.metric == "/a~1b/0");
    CHECK(errorsOf(json + "events = \"/n\"\nerrors = \"failed\"\n") ==
          Strings{"7:10: 'errors' must be a JSON Pointer starting with '/', e.g. \"/queue/depth\"; got \"failed\""});
    CHECK(errorsOf(json + "gauge = \"/x\"\nby = [\"a\"]\n") ==
          Strings{"7:1: 'by' is not used by json series: JSON values have no labels"});
    CHECK(errorsOf(json + "gauge = \"/x\"\nmax_label_sets = 3\n") ==
          Strings{"7:1: 'max_label_sets' is not used by json series: JSON values have no labels"});
    CHECK(errorsOf(json + "histogram = \"/x\"\n") ==
          Strings{"5:1: series 'x' needs exactly one of 'gauge', 'counter' or 'events'",
                  "6:1: 'histogram' is only used by prometheus series"});

    const std::string promql = "[[source]]\nname = \"f\"\ntype = \"promql\"\nurl = \"http://p:9090\"\n[source.series.x]\n";
    CHECK(load(promql + "query = 'sum(up)'\n").scrapes[0].series[0].query == "sum(up)");
    CHECK(errorsOf(promql + "query = ' '\n") == Strings{"6:9: 'query' must not be empty"});
    CHECK(errorsOf(promql + "gauge = 'up'\n") ==
          Strings{"5:1: series 'x' needs 'query'", "6:1: 'gauge' is only used by prometheus and json series"});
    CHECK(errorsOf(promql + "query = 'up'\nerrors = 'x'\n") ==
          Strings{"7:1: 'errors' is only used by prometheus and json series"});
    CHECK(errorsOf("[[source]]\nname = \"f\"\ntype = \"promql\"\nurl = \"http://p:9090\"\n") ==
          Strings{"1:1: no series: add [source.series.NAME] with what to read, e.g. query = "
                  "'sum(rate(http_requests_total[5m]))'"});
}

TEST_CASE("prometheus selectors: names, matchers, escapes", "[config][scrape]") {
    SeriesSelector s = selectorOf("'up'");
    CHECK(s.metric == "up");
    CHECK(s.matchers.empty());
    CHECK(s.text == "up");
    CHECK(selectorOf("'node:cpu_seconds:rate5m{}'").metric == "node:cpu_seconds:rate5m");

    s = selectorOf(R"('http_requests_total{ code =~ "5..", method!="GET",route!~"/health.*" , job="api", }')");
    CHECK(s.metric == "http_requests_total");
    REQUIRE(s.matchers.size() == 4);
    CHECK(s.matchers[0].label == "code");
    CHECK(s.matchers[0].op == Op::Regex);
    CHECK(s.matchers[0].value == "5..");
    CHECK(s.matchers[1].label == "method");
    CHECK(s.matchers[1].op == Op::NotEqual);
    CHECK(s.matchers[2].op == Op::NotRegex);
    CHECK(s.matchers[3].op == Op::Equal);
    const auto matches = [&](std::map<std::string, std::string, std::less<>> labels) {
        return s.matches([&](std::string_view name) {
            const auto it = labels.find(name);
            return it == labels.end() ? std::string_view() : std::string_view(it->second);
        });
    };
    CHECK(matches({{"code", "503"}, {"method", "POST"}, {"route", "/api"}, {"job", "api"}}));
    CHECK_FALSE(matches({{"code", "503"}, {"method", "POST"}, {"route", "/healthz"}, {"job", "api"}}));
    CHECK_FALSE(matches({{"code", "1503"}, {"method", "POST"}, {"route", "/api"}, {"job", "api"}}));

    s = selectorOf(R"('{__name__="queue_depth", queue="main"}')");
    CHECK(s.metric == "queue_depth");
    REQUIRE(s.matchers.size() == 1);
    CHECK(s.matchers[0].label == "queue");

    // Escapes in label values: \" \\ \n, and single-quoted values.
    s = selectorOf(R"('m{a="say \"hi\"", b="back\\slash", c="line\nbreak"}')");
    REQUIRE(s.matchers.size() == 3);
    CHECK(s.matchers[0].value == "say \"hi\"");
    CHECK(s.matchers[1].value == "back\\slash");
    CHECK(s.matchers[2].value == "line\nbreak");
    s = selectorOf(R"("m{d='it\\'s'}")");
    REQUIRE(s.matchers.size() == 1);
    CHECK(s.matchers[0].value == "it's");
    // TOML escapes are TOML's: a basic string needs \\ to pass a backslash on.
    s = selectorOf(R"("m{a=\"x\\\\y\"}")");
    REQUIRE(s.matchers.size() == 1);
    CHECK(s.matchers[0].value == "x\\y");
}

TEST_CASE("prometheus selectors: errors with the column inside the string", "[config][scrape]") {
    // gauge = '...' : the string starts at column 9, its text at column 10.
    CHECK(selectorError("'m{a=\"x\"'") == "6:17: invalid selector in 'gauge': missing '}'");
    CHECK(selectorError("'m{a==\"x\"}'") == "6:14: invalid selector in 'gauge': expected a quoted value after a=");
    CHECK(selectorError("'m{a:\"x\"}'") == "6:13: invalid selector in 'gauge': expected =, !=, =~ or !~ after label 'a'");
    CHECK(selectorError("'m{1a=\"x\"}'") ==
          "6:12: invalid selector in 'gauge': expected a label name ([a-zA-Z_][a-zA-Z0-9_]*), got '1'");
    CHECK(selectorError("'m{a=~\"(\"}'") .find("6:16: invalid selector in 'gauge': invalid regular expression \"(\": ") == 0);
    CHECK(selectorError("'m{a=\"x}'") == "6:14: invalid selector in 'gauge': unterminated label value");
    CHECK(selectorError("'m{a=\"\\t\"}'") ==
          "6:15: invalid selector in 'gauge': unknown escape in a label value (use \\\", \\\\ or \\n)");
    CHECK(selectorError("'m{a=\"x\" b=\"y\"}'") == "6:18: invalid selector in 'gauge': expected ',' or '}', got 'b'");
    CHECK(selectorError("'m{a=\"x\"} extra'") == "6:19: invalid selector in 'gauge': unexpected 'e' after the selector");
    CHECK(selectorError("'9m'") ==
          "6:10: invalid selector in 'gauge': expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or '{', got '9'");
    CHECK(selectorError("'m-total'") == "6:11: invalid selector in 'gauge': unexpected '-' after the selector");
    CHECK(selectorError("''") ==
          "6:10: invalid selector in 'gauge': no metric name (write metric{...} or {__name__=\"metric\", ...})");
    CHECK(selectorError("'{a=\"x\"}'") ==
          "6:10: invalid selector in 'gauge': no metric name (write metric{...} or {__name__=\"metric\", ...})");
    CHECK(selectorError("'m{__name__=\"n\"}'") ==
          "6:12: invalid selector in 'gauge': the metric name is given twice ('m' and __name__)");
    CHECK(selectorError("'{__name__=~\"n.*\"}'") ==
          "6:11: invalid selector in 'gauge': '__name__' takes only '=': a selector reads one metric");
    CHECK(selectorError("'{__name__=\"9n\"}'") == "6:21: invalid selector in 'gauge': \"9n\" is not a valid metric name");
    // With TOML escapes in the string the offset does not map to a column: the string's start.
    CHECK(selectorError("\"m{a=\\\"x\\\"\"") == "6:9: invalid selector in 'gauge': missing '}'");
}

TEST_CASE("health sources: status and body_contains", "[config][scrape]") {
    const std::string head = "[[source]]\nname = \"h\"\ntype = \"health\"\nurl = \"http://h/healthz\"\n";
    CHECK(load(head + "status = [\"2xx\", 404]\n").scrapes[0].status ==
          std::vector<std::pair<int, int>>{{200, 299}, {404, 404}});
    CHECK(errorsOf(head + "status = []\n") ==
          Strings{"5:10: 'status' must list at least one code or class such as \"2xx\" (leave it out for 2xx)"});
    CHECK(errorsOf(head + "status = [99, 600, \"6xx\", \"2x\", 2.5]\n") ==
          Strings{
              "5:11: elements of 'status' are status codes 100..599 or classes \"1xx\" to \"5xx\", got 99",
              "5:15: elements of 'status' are status codes 100..599 or classes \"1xx\" to \"5xx\", got 600",
              "5:20: elements of 'status' are status codes 100..599 or classes \"1xx\" to \"5xx\", got \"6xx\"",
              "5:27: elements of 'status' are status codes 100..599 or classes \"1xx\" to \"5xx\", got \"2x\"",
              "5:33: elements of 'status' are status codes 100..599 or classes \"1xx\" to \"5xx\", got 2.5",
          });
    CHECK(errorsOf(head + "status = 200\n") ==
          Strings{"5:10: 'status' must be an array of status codes and classes, e.g. [200, 204, \"3xx\"], got integer"});
    CHECK(errorsOf(head + "body_contains = 1\n") == Strings{"5:17: 'body_contains' must be a string, got integer"});
}

TEST_CASE("process sources: pid_file, command, cgroup, unit", "[config][scrape]") {
    const std::string head = "[[source]]\nname = \"p\"\ntype = \"process\"\n";
    const auto selectorFor = [&](const std::string& line) { return load(head + line + "\n").scrapes[0].process; };
    CHECK(selectorFor("pid_file = \"/run/nginx.pid\"").kind == ProcessSelector::PidFile);
    CHECK(selectorFor("pid_file = \"/run/nginx.pid\"").value == "/run/nginx.pid");
    CHECK(selectorFor("command = \"postgres\"").kind == ProcessSelector::Name);
    CHECK(selectorFor("cgroup = \"/system.slice/nginx.service\"").kind == ProcessSelector::Cgroup);
    CHECK(selectorFor("cgroup = \"/system.slice/nginx.service\"").value == "/system.slice/nginx.service");
    CHECK(selectorFor("unit = \"nginx\"").kind == ProcessSelector::Unit);
    CHECK(selectorFor("unit = \"nginx\"").value == "nginx");

    CHECK(errorsOf(head) == Strings{"1:1: a process source needs exactly one of 'pid_file', 'command', 'cgroup' or "
                                    "'unit', e.g. command = \"nginx\""});
    CHECK(errorsOf(head + "command = \"nginx\"\nunit = \"nginx.service\"\n") ==
          Strings{"5:1: a process source takes exactly one of 'pid_file', 'command', 'cgroup' or 'unit'; 'command' "
                  "is already set"});
    CHECK(errorsOf(head + "command = \"/usr/sbin/nginx\"\n") ==
          Strings{"4:11: 'command' is an exact process name such as \"nginx\", without '/' (use pid_file for a "
                  "path); got \"/usr/sbin/nginx\""});
    CHECK(errorsOf(head + "command = [\"nginx\"]\n") == Strings{"4:11: 'command' must be a string, got array"});
    CHECK(errorsOf(head + "cgroup = \"system.slice/../user.slice\"\n") ==
          Strings{"4:10: 'cgroup' must not contain \"..\", got \"system.slice/../user.slice\""});
    CHECK(errorsOf(head + "unit = \"system.slice/nginx.service\"\n") ==
          Strings{"4:8: 'unit' is a systemd unit name such as \"nginx.service\", got \"system.slice/nginx.service\" "
                  "(use cgroup for a cgroup path)"});
    CHECK(errorsOf(head + "pid_file = \"\"\n") == Strings{"4:12: 'pid_file' must not be empty"});
    CHECK(errorsOf(head + "command = \"nginx\"\nseries.x = { gauge = 'x' }\n") ==
          Strings{"5:1: 'series' is only used by prometheus, json and promql sources"});
}

TEST_CASE("rules read scrape series as source.series", "[config][scrape]") {
    const Config c = load(ruleOn("router.lost", "increase"));
    REQUIRE(c.rules.size() == 1);
    CHECK(c.rules[0].source == "router.lost");
    CHECK(c.rules[0].metric.kind == MetricKind::Increase);
    // Every stream of every type.
    for (const auto& [source, metric] : std::vector<std::pair<std::string, std::string>>{
             {"router.up", "value"},
             {"router.latency", "p99"},
             {"router.latency", "error_ratio"},
             {"router.requests", "rate"},
             {"router.lost", "rate"},
             {"stats.depth", "growth"},
             {"api.up", "value"},
             {"api.checks", "p95"},
             {"api.checks", "error_ratio"},
             {"proc.rss_bytes", "growth"},
             {"proc.cpu_percent", "value"},
             {"proc.open_fds", "value"},
             {"proc.threads", "value"},
             {"proc.processes", "value"},
         }) {
        INFO(source << " " << metric);
        const std::string threshold = metric == "error_ratio" ? "above = 0.5" : "above = 1";
        CHECK(errorsOf(ruleOn(source, metric, threshold)).empty());
    }
    // A file-based json source has no "up".
    CHECK(errorsOf(ruleOn("stats.up", "value")) ==
          Strings{"30:10: unknown source 'stats.up' (defined sources: app, api.checks, api.up, proc.cpu_percent, "
                  "proc.open_fds, proc.processes, proc.rss_bytes, proc.threads, router.latency, router.lost, "
                  "router.requests, router.up, stats.depth)"});
}

TEST_CASE("rules naming a scrape source or an unknown series", "[config][scrape]") {
    CHECK(errorsOf(ruleOn("router", "value")) ==
          Strings{"30:10: source 'router' is a prometheus source: rules read its series, e.g. 'router.lost' "
                  "(series: lost, latency, requests, up)"});
    CHECK(errorsOf(ruleOn("proc", "value")) ==
          Strings{"30:10: source 'proc' is a process source: rules read its series, e.g. 'proc.rss_bytes' "
                  "(series: rss_bytes, cpu_percent, open_fds, threads, processes)"});
    CHECK(errorsOf(ruleOn("router.lots", "increase")) ==
          Strings{"30:10: unknown source 'router.lots' (did you mean 'router.lost'?)"});
    CHECK(errorsOf(ruleOn("ap", "count")) == Strings{"30:10: unknown source 'ap' (did you mean 'app'?)"});
    CHECK(errorsOf(ruleOn("proc.rss", "value")) ==
          Strings{"30:10: unknown source 'proc.rss' (did you mean 'proc.rss_bytes'?)"});
    CHECK(errorsOf(ruleOn("zzzzzzzz", "value")) ==
          Strings{"30:10: unknown source 'zzzzzzzz' (defined sources: app, api.checks, api.up, proc.cpu_percent, "
                  "proc.open_fds, proc.processes, proc.rss_bytes, proc.threads, router.latency, router.lost, "
                  "router.requests, router.up, stats.depth)"});
}

TEST_CASE("rules on scrape series: metric capabilities", "[config][scrape]") {
    CHECK(errorsOf(ruleOn("app", "value")) ==
          Strings{"31:10: metric 'value' reads a value series (a gauge, counter or query); 'app' is an event source: "
                  "use count, rate or error_ratio"});
    CHECK(errorsOf(ruleOn("router.requests", "increase")) ==
          Strings{"31:10: metric 'increase' reads a value series (a gauge, counter or query); 'router.requests' is "
                  "an event source: use count, rate or error_ratio"});
    CHECK(errorsOf(ruleOn("router.lost", "error_ratio", "above = 0.5")) ==
          Strings{"31:10: metric 'error_ratio' counts events; 'router.lost' is a value series: use value, increase, "
                  "growth or rate"});
    CHECK(errorsOf(ruleOn("stats.depth", "count")) ==
          Strings{"31:10: metric 'count' counts events; 'stats.depth' is a value series: use value, increase, growth "
                  "or rate"});
    CHECK(errorsOf(ruleOn("proc.rss_bytes", "p99")) ==
          Strings{"31:10: metric 'p99' needs latency; 'proc.rss_bytes' is a value series: use value, increase, "
                  "growth or rate"});
    CHECK(errorsOf(ruleOn("router.requests", "p99")) ==
          Strings{"31:10: metric 'p99' needs latency, but 'router.requests' is an event series without latency "
                  "(histograms and health checks have it)"});
    // A ratio is judged by its operands.
    CHECK(errorsOf(ruleOn("router.latency", "ratio", "above = 2\nnumerator = \"p99\"\ndenominator = \"p50\"")).empty());
    CHECK(errorsOf(ruleOn("router.lost", "ratio", "above = 2\nnumerator = \"p99\"\ndenominator = \"p50\"")) ==
          Strings{"31:10: metric 'p99' needs latency; 'router.lost' is a value series: use value, increase, growth "
                  "or rate"});
    // The log source without latency keeps its own message.
    CHECK(errorsOf(kSources + "[[source]]\nname = \"nolat\"\ntype = \"json_log\"\npaths = [\"x\"]\n[[rule]]\n"
                              "name = \"r\"\nsource = \"nolat\"\nmetric = \"p99\"\nabove = 1\n") ==
          Strings{"35:10: metric 'p99' needs latency, but source 'nolat' has no 'latency' field (add latency = { "
                  "field = \"duration_ms\", unit = \"ms\" })"});
}

TEST_CASE("rules on scrape series: thresholds of value metrics take durations", "[config][scrape]") {
    const Config c = load(ruleOn("stats.depth", "value", "above = \"500ms\""));
    CHECK(c.rules[0].threshold == Approx(0.5));
    CHECK(load(ruleOn("stats.depth", "value", "above = 1.5")).rules[0].threshold == 1.5);
    CHECK(errorsOf(ruleOn("stats.depth", "value", "above = -1")) == Strings{"32:9: 'above' must not be negative, got -1"});
    CHECK(errorsOf(ruleOn("stats.depth", "value", "above = \"fast\"")).size() == 1);
    // Event metrics still take plain numbers only.
    CHECK(errorsOf(ruleOn("router.requests", "rate", "above = \"5s\"")) ==
          Strings{"32:9: 'above' must be a number, got string"});
}

TEST_CASE("rules on scrape series: labels and group_by come from by", "[config][scrape]") {
    CHECK(errorsOf(ruleOn("router.lost", "increase", "above = 1", "labels = { queue = \"main\" }")).empty());
    CHECK(errorsOf(ruleOn("router.lost", "increase", "above = 1", "group_by = [\"queue\"]")).empty());
    CHECK(errorsOf(ruleOn("router.lost", "increase", "above = 1", "group_by = [\"queeu\"]")) ==
          Strings{"33:13: label 'queeu' is not defined by source \"router.lost\" (did you mean 'queue'?); its labels: "
                  "queue"});
    CHECK(errorsOf(ruleOn("proc.rss_bytes", "value", "above = 1", "labels = { pid = \"1\" }")) ==
          Strings{"33:12: label 'pid' is not defined by source \"proc.rss_bytes\", which has no labels (a series keeps "
                  "the labels listed in its 'by', e.g. by = [\"pid\"])"});
}

TEST_CASE("scrape series names must not collide with source names", "[config][scrape]") {
    CHECK(errorsOf("[[source]]\nname = \"a.up\"\ntype = \"json_log\"\npaths = [\"x\"]\n"
                   "[[source]]\nname = \"a\"\ntype = \"health\"\nurl = \"http://h/\"\n") ==
          Strings{"5:1: series 'a.up' of source 'a' has the same name as source 'a.up': rules could not tell them "
                  "apart; rename one"});
}

TEST_CASE("rule tests feed log sources only", "[config][scrape]") {
    TempDir dir;
    writeFile(dir / "rollguard.toml", ruleOn("stats.depth", "value"));
    writeFile(dir / "t_test.toml",
              "config = \"rollguard.toml\"\n"
              "[[test]]\n"
              "name = \"t\"\n"
              "[[test.input]]\n"
              "source = \"stats.depth\"\n"
              "to = \"1m\"\n"
              "rate = 1\n"
              "[[test.input]]\n"
              "source = \"stats\"\n"
              "to = \"1m\"\n"
              "rate = 1\n"
              "[[test.expect]]\n"
              "at = \"1m\"\n"
              "firing = []\n");
    const auto r = loadRuleTestFile((dir / "t_test.toml").string());
    Strings errors;
    for (const auto& d : r.diagnostics) {
        if (d.level == Diagnostic::Level::Error) {
            errors.push_back(std::to_string(d.where.line) + ":" + std::to_string(d.where.column) + ": " + d.message);
        }
    }
    CHECK(errors == Strings{"5:10: rule tests feed log sources; 'stats.depth' is a scrape series",
                            "9:10: rule tests feed log sources; 'stats' is a scrape source"});
}

TEST_CASE("the shipped scrape example loads without diagnostics", "[config][scrape]") {
    const LoadResult r = loadConfigFile(ROLLGUARD_SOURCE_DIR "/config/examples/scrape.toml");
    for (const auto& d : r.diagnostics) {
        INFO(d.format());
        CHECK(false);
    }
    REQUIRE(r.ok());
    const Config& c = *r.config;
    CHECK(c.scrapes.size() == 5);
    for (ScrapeType type : {ScrapeType::Prometheus, ScrapeType::Json, ScrapeType::Health, ScrapeType::Process,
                            ScrapeType::Promql}) {
        const bool present = std::any_of(c.scrapes.begin(), c.scrapes.end(),
                                         [&](const ScrapeSourceConfig& s) { return s.type == type; });
        CHECK(present);
        // Each source has a rule reading one of its series.
        const bool ruled = std::any_of(c.rules.begin(), c.rules.end(), [&](const auto& rule) {
            const auto dot = rule.source.find('.');
            const auto* s = c.findScrape(rule.source.substr(0, dot));
            return s != nullptr && s->type == type;
        });
        CHECK(ruled);
    }
}
