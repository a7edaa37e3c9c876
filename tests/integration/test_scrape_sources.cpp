// The scrape sources end to end below the daemon: real HTTP servers on loopback (ours),
// real files and real /proc, through ScrapeLoop into the judge's streams.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "rollguard/agent/judge.h"
#include "rollguard/agent/scrape_loop.h"
#include "rollguard/rules/stats.h"
#include "http_receiver.h"
#include "prometheus_server.h"
#include "temp_dir.h"

using namespace rollguard;
using namespace rollguard::agent;
using rollguard::testing::HttpReceiver;
using rollguard::testing::TempDir;

namespace {

SeriesSelector selector(std::string metric, std::vector<std::tuple<std::string, rules::LabelMatcher::Op, std::string>> m = {}) {
    SeriesSelector s;
    s.metric = std::move(metric);
    s.text = s.metric;
    for (auto& [label, op, value] : m) {
        std::string error;
        auto matcher = rules::LabelMatcher::make(label, op, value, error);
        REQUIRE(matcher != nullptr);
        s.matchers.push_back(std::move(*matcher));
    }
    return s;
}

ScrapeSeriesConfig series(std::string name, ScrapeSeriesConfig::Kind kind, SeriesSelector sel) {
    ScrapeSeriesConfig s;
    s.name = std::move(name);
    s.kind = kind;
    s.selector = std::move(sel);
    return s;
}

ScrapeSourceConfig source(std::string name, ScrapeType type, std::string url) {
    ScrapeSourceConfig s;
    s.name = std::move(name);
    s.type = type;
    s.url = std::move(url);
    s.interval = std::chrono::seconds{5};
    s.timeout = std::chrono::seconds{2};
    s.jitter = false;
    return s;
}

/// A judge and a scrape loop over one config, and the data of one harvest at a time.
struct Rig {
    explicit Rig(Config c) : config(std::move(c)), judge(config), loop(config, judge, "test-host") {}

    /// Scrapes everything once and returns what came out.
    ScrapeHarvest scrape() {
        loop.scrapeOnce();
        return loop.take();
    }

    /// The stream-0 stats of `stream` in a harvest, merged over its parts (nullopt: none).
    std::optional<IntervalStats> part(const ScrapeHarvest& h, const std::string& stream) {
        const std::size_t index = judge.sourceIndex(stream);
        REQUIRE(index != Judge::npos);
        std::optional<IntervalStats> out;
        for (const auto& p : h.parts) {
            if (p.source == index && p.part.stream == 0) {
                out = p.part.stats;
            }
        }
        return out;
    }

    std::optional<bool> failed(const ScrapeHarvest& h, const std::string& stream) {
        const std::size_t index = judge.sourceIndex(stream);
        std::optional<bool> out;
        for (const auto& [s, f] : h.fetch_errors) {
            if (s == index) {
                out = f;
            }
        }
        return out;
    }

    ScrapeTargetStatus status(std::size_t i = 0) { return loop.status().at(i); }

    Config config;
    Judge judge;
    ScrapeLoop loop;
};

double valueOf(const std::optional<IntervalStats>& s) {
    REQUIRE(s.has_value());
    REQUIRE(s->last_value.has_value());
    return *s->last_value;
}

const char* kPromText1 = R"(# HELP queue_depth Messages waiting.
# TYPE queue_depth gauge
queue_depth{queue="main"} 7
queue_depth{queue="retry"} 3
# TYPE messages_lost_total counter
messages_lost_total{queue="main"} 100
messages_lost_total{queue="retry"} 5
# TYPE http_requests_total counter
http_requests_total{code="200"} 1000
http_requests_total{code="500"} 10
# TYPE rpc_duration_seconds histogram
rpc_duration_seconds_bucket{le="0.1"} 100
rpc_duration_seconds_bucket{le="0.5"} 150
rpc_duration_seconds_bucket{le="1"} 190
rpc_duration_seconds_bucket{le="+Inf"} 200
rpc_duration_seconds_sum 50
rpc_duration_seconds_count 200
)";

// 60 s later: lost +30 on main, retry reset to 2; 200 more requests, 20 of them 500s;
// the histogram got 100 observations: 80 under 0.1 s, 10 in (0.1, 0.5], 10 above 1 s.
const char* kPromText2 = R"(# TYPE queue_depth gauge
queue_depth{queue="main"} 9
queue_depth{queue="retry"} 1
# TYPE messages_lost_total counter
messages_lost_total{queue="main"} 130
messages_lost_total{queue="retry"} 2
# TYPE http_requests_total counter
http_requests_total{code="200"} 1180
http_requests_total{code="500"} 30
# TYPE rpc_duration_seconds histogram
rpc_duration_seconds_bucket{le="0.1"} 180
rpc_duration_seconds_bucket{le="0.5"} 240
rpc_duration_seconds_bucket{le="1"} 280
rpc_duration_seconds_bucket{le="+Inf"} 300
rpc_duration_seconds_sum 90
rpc_duration_seconds_count 300
)";

Config prometheusConfig(const std::string& url) {
    Config config;
    auto src = source("app", ScrapeType::Prometheus, url);
    src.series.push_back(series("queue", ScrapeSeriesConfig::Kind::Gauge, selector("queue_depth")));
    src.series.push_back(series("lost", ScrapeSeriesConfig::Kind::Counter, selector("messages_lost_total")));
    auto requests = series("requests", ScrapeSeriesConfig::Kind::Events, selector("http_requests_total"));
    requests.errors = selector("http_requests_total", {{"code", rules::LabelMatcher::Op::Regex, "5.."}});
    src.series.push_back(requests);
    auto rpc = series("rpc", ScrapeSeriesConfig::Kind::Histogram, selector("rpc_duration_seconds"));
    rpc.errors_above = 0.5;
    src.series.push_back(rpc);
    config.scrapes.push_back(src);
    return config;
}

}  // namespace

TEST_CASE("prometheus source turns gauges, counters, events and histograms into store data", "[scrape][source]") {
    HttpReceiver target;
    target.setBody(kPromText1, {{"Content-Type", "text/plain; version=0.0.4"}});
    Rig rig(prometheusConfig(target.url("/metrics")));

    auto first = rig.scrape();
    CHECK(valueOf(rig.part(first, "app.queue")) == 10.0);  // 7 + 3: summed without `by`
    CHECK(valueOf(rig.part(first, "app.up")) == 1.0);
    // A counter's first reading has no increase yet.
    CHECK_FALSE(rig.part(first, "app.lost").has_value());
    CHECK(rig.failed(first, "app.lost") == false);
    CHECK(rig.status().up);
    CHECK(rig.status().samples == 12);

    target.setBody(kPromText2, {{"Content-Type", "text/plain; version=0.0.4"}});
    auto second = rig.scrape();
    CHECK(valueOf(rig.part(second, "app.queue")) == 10.0);
    // main +30, retry reset 5 -> 2: the increase is the new reading (2).
    CHECK(valueOf(rig.part(second, "app.lost")) == 32.0);
    CHECK(rig.status().counter_resets == 1);

    const auto requests = rig.part(second, "app.requests");
    REQUIRE(requests);
    CHECK(requests->events == 200);
    CHECK(requests->errors == 20);

    const auto rpc = rig.part(second, "app.rpc");
    REQUIRE(rpc);
    CHECK(rpc->events == 100);
    CHECK(rpc->errors == 10);  // the 10 above 1 s: (0.5, 1] got none
    CHECK(rpc->latency.totalCount() == 100);
    // 80% fall under 0.1 s: histogram_quantile's p50 is 0.1 * 50/80 = 0.0625 s.
    const double p50 = static_cast<double>(rpc->latency.valueAtPercentile(50.0)) / 1e6;
    CHECK(p50 == Approx(0.0625).epsilon(0.1));
    // p95 lies in the +Inf bucket: the highest finite bound, 1 s.
    const double p95 = static_cast<double>(rpc->latency.valueAtPercentile(95.0)) / 1e6;
    CHECK(p95 == Approx(1.0).epsilon(0.01));
}

TEST_CASE("prometheus source keeps label sets apart for rules that group by them", "[scrape][source]") {
    HttpReceiver target;
    target.setBody(kPromText1);
    Config config = prometheusConfig(target.url("/metrics"));
    config.scrapes[0].series[0].by = {"queue"};
    rules::RuleSpec rule;
    rule.name = "queue too deep";
    rule.source = "app.queue";
    rule.metric.kind = rules::MetricKind::Value;
    rule.metric.text = "value";
    rule.threshold = 5;
    rule.window = std::chrono::minutes{1};
    rule.selection.group_by = {"queue"};
    config.rules.push_back(rule);
    Rig rig(std::move(config));

    const auto now = rules::TimePoint{std::chrono::seconds{1'700'000'000}};
    for (const auto& p : rig.scrape().parts) {
        rig.judge.addPart(p.source, p.part, now, std::chrono::seconds{1});
    }
    const auto evaluation = rig.judge.evaluate(now);
    (void)evaluation;
    auto inputs = rig.judge.inputsFor(0);
    std::map<std::string, double> values;
    for (const auto& in : inputs) {
        REQUIRE(in.stats.last_value);
        values[in.group] = *in.stats.last_value;
    }
    CHECK(values == std::map<std::string, double>{{"queue=main", 7.0}, {"queue=retry", 3.0}});
}

TEST_CASE("prometheus source reads OpenMetrics with _created and sees a recreated counter as a reset", "[scrape][source]") {
    HttpReceiver target;
    const auto body = [](int value, int created) {
        return "# TYPE jobs counter\njobs_total " + std::to_string(value) + "\njobs_created " + std::to_string(created) +
               "\n# EOF\n";
    };
    const std::vector<std::pair<std::string, std::string>> om{
        {"Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8"}};
    Config config;
    auto src = source("om", ScrapeType::Prometheus, target.url("/metrics"));
    src.series.push_back(series("jobs", ScrapeSeriesConfig::Kind::Counter, selector("jobs_total")));
    config.scrapes.push_back(src);
    Rig rig(std::move(config));

    target.setBody(body(100, 1000), om);
    rig.scrape();
    target.setBody(body(150, 1000), om);
    CHECK(valueOf(rig.part(rig.scrape(), "om.jobs")) == 50.0);
    // The counter grew past its old value but was recreated: the increase is all of it.
    target.setBody(body(170, 2000), om);
    CHECK(valueOf(rig.part(rig.scrape(), "om.jobs")) == 170.0);
    CHECK(rig.status().counter_resets == 1);

    // OpenMetrics without # EOF is truncated: the whole scrape fails.
    target.setBody("# TYPE jobs counter\njobs_total 200\n", om);
    const auto h = rig.scrape();
    CHECK(rig.failed(h, "om.jobs") == true);
    CHECK(valueOf(rig.part(h, "om.up")) == 0.0);
    CHECK(rig.status().errors.at("parse") == 1);
    CHECK_THAT(rig.status().last_error, Catch::Contains("EOF"));
}

TEST_CASE("bad targets are counted errors of their own and the others carry on", "[scrape][source]") {
    HttpReceiver good, garbage, slow, drip, big, html, duplicate, latin1;
    good.setBody("up_gauge 1\n");
    html.setBody("<html><body>login</body></html>\n", {{"Content-Type", "text/html"}});
    duplicate.setBody("up_gauge{a=\"1\"} 1\nup_gauge{a=\"1\"} 2\n");
    latin1.setBody("up_gauge{city=\"K\xf6ln\"} 1\n");
    garbage.setBody("this is { not the exposition format\n");
    slow.setBody("up_gauge 1\n");
    // The timeouts come from the targets, not from the machine's speed: "slow" answers
    // only when the test ends, "drip" needs at least 40 s for its body. Every other target
    // answers at once, and has a timeout (3 s) a loaded machine still answers within.
    slow.setDelay(std::chrono::minutes{10});
    drip.setBody(std::string(2000, '#') + "\nup_gauge 1\n");
    drip.setDrip(std::chrono::milliseconds{20});
    big.setBody("# " + std::string(100'000, 'x') + "\nup_gauge 1\n");
    const rollguard::testing::ReservedPort refused_port;  // refused: bound, never listening, and nobody else's
    Config config;
    const auto add = [&](const std::string& name, const std::string& url) {
        auto src = source(name, ScrapeType::Prometheus, url);
        src.timeout = std::chrono::seconds{3};
        src.max_bytes = 10'000;
        src.series.push_back(series("v", ScrapeSeriesConfig::Kind::Gauge, selector("up_gauge")));
        config.scrapes.push_back(src);
    };
    add("good", good.url("/metrics"));
    add("garbage", garbage.url("/metrics"));
    add("slow", slow.url("/metrics"));
    add("drip", drip.url("/metrics"));
    add("big", big.url("/metrics"));
    add("dns", "http://rollguard-no-such-host.invalid/metrics");
    add("refused", refused_port.url("/metrics"));
    add("html", html.url("/metrics"));
    add("duplicate", duplicate.url("/metrics"));
    add("latin1", latin1.url("/metrics"));
    Rig rig(std::move(config));

    const auto h = rig.scrape();
    CHECK(valueOf(rig.part(h, "good.v")) == 1.0);
    CHECK(rig.failed(h, "good.v") == false);
    const auto statuses = rig.loop.status();
    const auto kindOf = [&](std::size_t i) {
        REQUIRE(statuses[i].errors.size() == 1);
        return statuses[i].errors.begin()->first;
    };
    CHECK(statuses[0].up);
    CHECK(kindOf(1) == "parse");
    CHECK(kindOf(2) == "timeout");
    CHECK(kindOf(3) == "timeout");
    CHECK(kindOf(4) == "too_large");
    CHECK(kindOf(5) == "dns");
    CHECK(kindOf(6) == "connect");
    CHECK(kindOf(7) == "parse");  // a login page instead of metrics
    CHECK(kindOf(8) == "parse");
    CHECK_THAT(statuses[8].last_error, Catch::Contains("duplicate"));
    CHECK(kindOf(9) == "parse");
    CHECK_THAT(statuses[9].last_error, Catch::Contains("UTF-8"));
    for (const char* name :
         {"garbage.v", "slow.v", "drip.v", "big.v", "dns.v", "refused.v", "html.v", "duplicate.v", "latin1.v"}) {
        INFO(name);
        CHECK(rig.failed(h, name) == true);
    }
}

TEST_CASE("json source reads numbers by JSON pointer from a URL and from a file", "[scrape][source]") {
    HttpReceiver target;
    target.setBody(R"({"error_rate": 0.02, "latency": {"p95_ms": 180}, "healthy": true, "count": "42",
                      "requests_total": 1000, "errors_total": 10})",
                   {{"Content-Type", "application/json"}});
    TempDir dir;
    rollguard::testing::writeFile(dir / "metrics.json", R"({"emergence_score": 0.7})");

    Config config;
    auto web = source("svc", ScrapeType::Json, target.url("/stats"));
    web.series.push_back(series("error_rate", ScrapeSeriesConfig::Kind::Gauge, selector("/error_rate")));
    auto p95 = series("p95", ScrapeSeriesConfig::Kind::Gauge, selector("/latency/p95_ms"));
    p95.scale = 0.001;
    web.series.push_back(p95);
    web.series.push_back(series("healthy", ScrapeSeriesConfig::Kind::Gauge, selector("/healthy")));
    web.series.push_back(series("count", ScrapeSeriesConfig::Kind::Gauge, selector("/count")));
    auto requests = series("requests", ScrapeSeriesConfig::Kind::Events, selector("/requests_total"));
    requests.errors = selector("/errors_total");
    web.series.push_back(requests);
    web.series.push_back(series("missing", ScrapeSeriesConfig::Kind::Gauge, selector("/nope")));
    config.scrapes.push_back(web);
    auto file = source("file", ScrapeType::Json, "");
    file.path = (dir / "metrics.json").string();
    file.series.push_back(series("score", ScrapeSeriesConfig::Kind::Gauge, selector("/emergence_score")));
    config.scrapes.push_back(file);
    Rig rig(std::move(config));

    auto h = rig.scrape();
    CHECK(valueOf(rig.part(h, "svc.error_rate")) == 0.02);
    CHECK(valueOf(rig.part(h, "svc.p95")) == Approx(0.18));
    CHECK(valueOf(rig.part(h, "svc.healthy")) == 1.0);
    CHECK(valueOf(rig.part(h, "svc.count")) == 42.0);
    CHECK(valueOf(rig.part(h, "file.score")) == 0.7);
    CHECK(rig.failed(h, "svc.missing") == true);
    CHECK(rig.failed(h, "svc.error_rate") == false);
    CHECK(rig.status(0).up);
    CHECK(rig.status(0).errors.at("missing_value") == 1);
    CHECK_THAT(rig.status(0).last_error, Catch::Contains("/nope"));

    target.setBody(R"({"error_rate": 0.03, "latency": {"p95_ms": 200}, "healthy": false, "count": "42",
                      "requests_total": 1300, "errors_total": 40})");
    h = rig.scrape();
    const auto req = rig.part(h, "svc.requests");
    REQUIRE(req);
    CHECK(req->events == 300);
    CHECK(req->errors == 30);
    CHECK(valueOf(rig.part(h, "svc.healthy")) == 0.0);

    target.setBody("<html>oops</html>");
    h = rig.scrape();
    CHECK(rig.failed(h, "svc.error_rate") == true);
    CHECK(valueOf(rig.part(h, "svc.up")) == 0.0);
    std::filesystem::remove(dir / "metrics.json");
    CHECK(rig.failed(rig.scrape(), "file.score") == true);
}

TEST_CASE("health source yields up and one check event per probe", "[scrape][source]") {
    HttpReceiver target;
    target.setBody("status: ok\n");
    Config config;
    auto health = source("api", ScrapeType::Health, target.url("/healthz"));
    health.body_contains = "ok";
    config.scrapes.push_back(health);
    auto notfound = source("legacy", ScrapeType::Health, target.url("/gone"));
    notfound.status = {{200, 299}, {404, 404}};
    config.scrapes.push_back(notfound);
    Rig rig(std::move(config));

    auto h = rig.scrape();
    CHECK(valueOf(rig.part(h, "api.up")) == 1.0);
    auto checks = rig.part(h, "api.checks");
    REQUIRE(checks);
    CHECK(checks->events == 1);
    CHECK(checks->errors == 0);
    CHECK(checks->latency.totalCount() == 1);

    target.setStatus(404);
    h = rig.scrape();
    CHECK(valueOf(rig.part(h, "api.up")) == 0.0);
    checks = rig.part(h, "api.checks");
    REQUIRE(checks);
    CHECK(checks->errors == 1);
    CHECK(rig.status(0).errors.at("http_status") == 1);
    CHECK(valueOf(rig.part(h, "legacy.up")) == 1.0);  // 404 is in its status set

    target.setStatus(200);
    target.setBody("status: degraded\n");
    h = rig.scrape();
    CHECK(valueOf(rig.part(h, "api.up")) == 0.0);
    CHECK(rig.status(0).errors.at("body_mismatch") == 1);
}

TEST_CASE("process source reads RSS, CPU, fds and threads of a process found by pid file", "[scrape][source]") {
    TempDir dir;
    rollguard::testing::writeFile(dir / "app.pid", std::to_string(::getpid()) + "\n");
    Config config;
    auto proc = source("proc", ScrapeType::Process, "");
    proc.process = ProcessSelector{ProcessSelector::PidFile, (dir / "app.pid").string()};
    config.scrapes.push_back(proc);
    Rig rig(std::move(config));

    auto h = rig.scrape();
    CHECK(valueOf(rig.part(h, "proc.rss_bytes")) > 1e6);
    CHECK(valueOf(rig.part(h, "proc.threads")) >= 1.0);
    CHECK(valueOf(rig.part(h, "proc.open_fds")) >= 3.0);
    CHECK(valueOf(rig.part(h, "proc.processes")) == 1.0);
    CHECK_FALSE(rig.part(h, "proc.cpu_percent").has_value());  // needs two samples
    // Burn a little CPU so the second sample has something to show.
    volatile double x = 0;
    for (int i = 0; i < 20'000'000; ++i) {
        x = x + std::sqrt(static_cast<double>(i));
    }
    h = rig.scrape();
    CHECK(valueOf(rig.part(h, "proc.cpu_percent")) > 0.0);

    // A pid file naming a process that is gone: counted, and "processes" says 0.
    rollguard::testing::writeFile(dir / "app.pid", "999999999\n");
    h = rig.scrape();
    CHECK(valueOf(rig.part(h, "proc.processes")) == 0.0);
    CHECK(rig.failed(h, "proc.rss_bytes") == true);
    CHECK_FALSE(rig.status().up);
}

TEST_CASE("promql source turns vector results into labelled values and tells errors from empty results", "[scrape][source]") {
    HttpReceiver api;
    Config config;
    auto fleet = source("fleet", ScrapeType::Promql, api.url("/"));
    ScrapeSeriesConfig errors;
    errors.name = "error_ratio";
    errors.kind = ScrapeSeriesConfig::Kind::Query;
    errors.query = R"(sum by (version) (rate(http_requests_total{code=~"5.."}[1m])))";
    errors.by = {"version"};
    fleet.series.push_back(errors);
    config.scrapes.push_back(fleet);
    rules::RuleSpec rule;
    rule.name = "fleet errors";
    rule.source = "fleet.error_ratio";
    rule.metric.kind = rules::MetricKind::Value;
    rule.threshold = 0.05;
    rule.window = std::chrono::minutes{1};
    rule.selection.group_by = {"version"};
    config.rules.push_back(rule);
    Rig rig(std::move(config));

    api.setBody(R"({"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"version":"v1","instance":"a"},"value":[1700000000.1,"0.01"]},
        {"metric":{"version":"v2","instance":"b"},"value":[1700000000.1,"0.25"]},
        {"metric":{"version":"v2","instance":"c"},"value":[1700000000.1,"NaN"]}]}})",
                {{"Content-Type", "application/json"}});
    auto h = rig.scrape();
    CHECK(valueOf(rig.part(h, "fleet.error_ratio")) == Approx(0.26));
    CHECK(valueOf(rig.part(h, "fleet.up")) == 1.0);
    // The query went out URL-encoded to the instant-query endpoint.
    const auto requests = api.requests();
    REQUIRE(requests.size() == 1);
    CHECK_THAT(requests[0].target, Catch::StartsWith("/api/v1/query?query=sum%20by%20%28version%29"));
    const auto now = rules::TimePoint{std::chrono::seconds{1'700'000'000}};
    for (const auto& p : h.parts) {
        rig.judge.addPart(p.source, p.part, now, std::chrono::seconds{1});
    }
    rig.judge.evaluate(now);
    std::map<std::string, double> values;
    for (const auto& in : rig.judge.inputsFor(0)) {
        REQUIRE(in.stats.last_value);
        values[in.group] = *in.stats.last_value;
        CHECK_FALSE(in.fetch_error);
    }
    CHECK(values == std::map<std::string, double>{{"version=v1", 0.01}, {"version=v2", 0.25}});

    // An empty result is no data, not an error.
    api.setBody(R"({"status":"success","data":{"resultType":"vector","result":[]}})");
    h = rig.scrape();
    CHECK_FALSE(rig.part(h, "fleet.error_ratio").has_value());
    CHECK(rig.failed(h, "fleet.error_ratio") == false);

    // A scalar is one value.
    api.setBody(R"({"status":"success","data":{"resultType":"scalar","result":[1700000000,"3.5"]}})");
    CHECK(valueOf(rig.part(rig.scrape(), "fleet.error_ratio")) == 3.5);

    // An error answer: counted with Prometheus' own message, and the rule sees fetch_error.
    api.setStatus(400);
    api.setBody(R"({"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected character"})");
    h = rig.scrape();
    CHECK(rig.failed(h, "fleet.error_ratio") == true);
    CHECK(valueOf(rig.part(h, "fleet.up")) == 0.0);
    CHECK(rig.status().errors.at("http_status") == 1);
    CHECK_THAT(rig.status().last_error, Catch::Contains("bad_data: 1:5: parse error"));
    for (const auto& [source, failed] : h.fetch_errors) {
        rig.judge.setFetchError(source, failed);
    }
    for (const auto& in : rig.judge.inputsFor(0)) {
        CHECK(in.fetch_error);
    }
}

TEST_CASE("scrape credentials come from files, are re-read on every scrape, and a missing one fails the scrape", "[scrape][source]") {
    HttpReceiver target;
    target.setBody("g 1\n");
    TempDir dir;
    rollguard::testing::writeFile(dir / "token", "s3cret\n");
    Config config;
    auto src = source("auth", ScrapeType::Prometheus, target.url("/metrics"));
    src.bearer_token_file = (dir / "token").string();
    src.headers = {{"X-Scope-OrgID", "tenant-a"}};
    src.series.push_back(series("g", ScrapeSeriesConfig::Kind::Gauge, selector("g")));
    config.scrapes.push_back(src);
    Rig rig(std::move(config));

    rig.scrape();
    rollguard::testing::writeFile(dir / "token", "rotated\n");
    rig.scrape();
    const auto requests = target.requests();
    REQUIRE(requests.size() == 2);
    const auto header = [](const rollguard::testing::ReceivedRequest& r, const std::string& name) {
        for (const auto& [k, v] : r.headers) {
            if (k == name) {
                return v;
            }
        }
        return std::string();
    };
    CHECK(header(requests[0], "authorization") == "Bearer s3cret");
    CHECK(header(requests[1], "authorization") == "Bearer rotated");
    CHECK(header(requests[0], "x-scope-orgid") == "tenant-a");
    CHECK_THAT(header(requests[0], "accept"), Catch::StartsWith("application/openmetrics-text;version=1.0.0"));

    std::filesystem::remove(dir / "token");
    const auto h = rig.scrape();
    CHECK(rig.failed(h, "auth.g") == true);
    CHECK(rig.status().errors.at("credentials") == 1);
    CHECK(target.requests().size() == 2);  // nothing was sent without the token
}

TEST_CASE("a scrape source's secret file is read like a hook's: empty fails, group/other-readable warns once", "[scrape][source][secrets]") {
    // The one reader of util/secret.h: an empty file (or unset or empty variable) is a
    // "credentials" error and nothing is sent; a file others can read is used, with one
    // warning per target (not one per scrape) that says chmod 600.
    HttpReceiver target;
    target.setBody("g 1\n");
    TempDir dir;
    const auto token = dir / "token";
    rollguard::testing::writeFile(token, " \n");
    REQUIRE(::chmod(token.c_str(), 0600) == 0);
    Config config;
    auto src = source("auth", ScrapeType::Prometheus, target.url("/metrics"));
    src.bearer_token_file = token.string();
    src.series.push_back(series("g", ScrapeSeriesConfig::Kind::Gauge, selector("g")));
    config.scrapes.push_back(src);
    Rig rig(std::move(config));

    std::ostringstream log;
    const auto previous = spdlog::default_logger();
    spdlog::set_default_logger(
        std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_st>(log)));

    const auto h = rig.scrape();
    CHECK(rig.failed(h, "auth.g") == true);
    CHECK(rig.status().errors.at("credentials") == 1);
    CHECK_THAT(rig.status().last_error, Catch::Contains("bearer token file " + token.string() + " is empty"));
    CHECK(target.requests().empty());

    rollguard::testing::writeFile(token, "s3cret\n");
    REQUIRE(::chmod(token.c_str(), 0644) == 0);
    CHECK(rig.failed(rig.scrape(), "auth.g") == false);
    CHECK(rig.failed(rig.scrape(), "auth.g") == false);
    spdlog::set_default_logger(previous);
    REQUIRE(target.requests().size() == 2);
    const std::string text = log.str();
    const std::string warning = "scrape source auth: bearer token file " + token.string() +
                                " is accessible by group or others (mode 644): chmod 600 " + token.string();
    CHECK_THAT(text, Catch::Contains(warning));
    CHECK(text.find(warning) == text.rfind(warning));  // once, not on every scrape
    CHECK(text.find("s3cret") == std::string::npos);
}

TEST_CASE("scrape thread scrapes on its interval and stops promptly", "[scrape][source][thread]") {
    HttpReceiver target;
    target.setBody("g 1\n");
    Config config;
    auto src = source("tick", ScrapeType::Prometheus, target.url("/metrics"));
    src.interval = std::chrono::milliseconds{100};
    // Generous: the target answers at once, but a loaded machine may be slow to run the
    // receiver; a scrape that timed out would leave no value to check.
    src.timeout = std::chrono::seconds{5};
    src.jitter = true;
    src.series.push_back(series("g", ScrapeSeriesConfig::Kind::Gauge, selector("g")));
    config.scrapes.push_back(src);
    Rig rig(std::move(config));
    rig.loop.start();
    // Four scrapes answered and handled (not just sent) on the thread's own schedule.
    CHECK(rollguard::testing::eventually([&] { return rig.status().scrapes >= 4; }));
    rig.loop.stop();  // wakes the thread out of its poll
    const auto h = rig.loop.take();
    CHECK(rig.part(h, "tick.g").has_value());
    CHECK(rig.status().scrapes >= 4);
}

namespace {

/// Writes a textfile-collector file atomically, as the node exporter wants it.
void writeTextfile(const std::string& dir, const std::string& text) {
    rollguard::testing::writeFile(dir + "/app.prom.tmp", text);
    std::filesystem::rename(dir + "/app.prom.tmp", dir + "/app.prom");
}

std::string appMetrics(int requests, int queue) {
    return "# TYPE app_requests_total counter\napp_requests_total " + std::to_string(requests) +
           "\n# TYPE app_queue_depth gauge\napp_queue_depth{queue=\"main\"} " + std::to_string(queue) + "\n";
}

}  // namespace

TEST_CASE("real node exporter and real Prometheus: a known counter's increase, a known gauge, and fleet queries", "[scrape][promql][integration]") {
    if (!rollguard::testing::PrometheusServer::available()) {
        WARN("prometheus or prometheus-node-exporter missing: run scripts/install-deps.sh");
        return;
    }
    rollguard::testing::PrometheusServer server;
    writeTextfile(server.textfileDir(), appMetrics(100, 42));

    Config config;
    auto node = source("node", ScrapeType::Prometheus,
                       "http://127.0.0.1:" + std::to_string(server.exporterPort()) + "/metrics");
    node.series.push_back(series("requests", ScrapeSeriesConfig::Kind::Counter, selector("app_requests_total")));
    node.series.push_back(series("queue", ScrapeSeriesConfig::Kind::Gauge,
                                 selector("app_queue_depth", {{"queue", rules::LabelMatcher::Op::Equal, "main"}})));
    node.series.push_back(series("load", ScrapeSeriesConfig::Kind::Gauge, selector("node_load1")));
    config.scrapes.push_back(node);
    auto fleet = source("fleet", ScrapeType::Promql, server.url());
    ScrapeSeriesConfig queue;
    queue.name = "queue";
    queue.kind = ScrapeSeriesConfig::Kind::Query;
    queue.query = "max by (queue) (app_queue_depth)";
    queue.by = {"queue"};
    fleet.series.push_back(queue);
    ScrapeSeriesConfig up;
    up.name = "node_up";
    up.kind = ScrapeSeriesConfig::Kind::Query;
    up.query = R"(sum(up{job="node"}))";
    fleet.series.push_back(up);
    config.scrapes.push_back(fleet);
    Rig rig(std::move(config));

    // The exporter directly: its whole /metrics parses, the gauge reads as written.
    auto h = rig.scrape();
    INFO(server.logs());
    CHECK(rig.status(0).up);
    CHECK(rig.status(0).samples > 500);
    CHECK(valueOf(rig.part(h, "node.queue")) == 42.0);
    CHECK(valueOf(rig.part(h, "node.load")) >= 0.0);
    CHECK(valueOf(rig.part(h, "node.up")) == 1.0);
    writeTextfile(server.textfileDir(), appMetrics(160, 42));
    h = rig.scrape();
    CHECK(valueOf(rig.part(h, "node.requests")) == 60.0);

    // Through Prometheus: wait (bounded) until it has scraped the textfile metric.
    std::optional<double> fleet_queue;
    rollguard::testing::eventually(
        [&] {
            h = rig.scrape();
            if (auto p = rig.part(h, "fleet.queue"); p && p->last_value) {
                fleet_queue = p->last_value;
            }
            return fleet_queue.has_value();
        },
        std::chrono::seconds{60});
    REQUIRE(fleet_queue);
    CHECK(*fleet_queue == 42.0);
    CHECK(valueOf(rig.part(h, "fleet.node_up")) == 1.0);
    CHECK(valueOf(rig.part(h, "fleet.up")) == 1.0);
    for (const auto& t : rig.loop.status()) {
        CHECK(t.errors.empty());
    }
}
