// The exposition parser against a real prometheus-node-exporter (Debian package) on
// loopback: its whole /metrics parses with zero errors, a gauge we plant through its
// textfile collector reads back exactly, and a counter's increase between two scrapes
// is what we caused.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "http_receiver.h"
#include "process.h"
#include "rollguard/agent/exposition.h"
#include "rollguard/agent/scraper.h"
#include "temp_dir.h"

using namespace rollguard::testing;
using namespace rollguard::agent;
using namespace std::chrono_literals;

namespace {

const char* const kNodeExporterCandidates[] = {"/usr/bin/prometheus-node-exporter", "/usr/bin/node_exporter"};

std::string findNodeExporter() {
    for (const char* path : kNodeExporterCandidates) {
        if (::access(path, X_OK) == 0) {
            return path;
        }
    }
    return {};
}

using Scrape = rollguard::agent::ScrapeResponse;

/// One scrape through rollguard's own fetch engine, with the Accept header Prometheus
/// sends (gzip accepted, as Prometheus does).
Scrape scrape(std::uint16_t port) {
    rollguard::agent::Scraper scraper;
    rollguard::agent::ScrapeRequest request;
    request.url = "http://127.0.0.1:" + std::to_string(port) + "/metrics";
    request.headers = {std::string("Accept: ") + kScrapeAcceptHeader};
    request.timeout = std::chrono::seconds{10};
    request.max_bytes = 64 << 20;
    return scraper.fetchAll({request}).front();
}

}  // namespace

TEST_CASE("exposition: a real node exporter's whole /metrics parses without error", "[integration][exposition]") {
    const std::string binary = findNodeExporter();
    INFO("prometheus-node-exporter is not installed: run scripts/install-deps.sh");
    REQUIRE_FALSE(binary.empty());

    TempDir dir;
    std::filesystem::create_directories(dir / "textfile");
    // Escapes and UTF-8 in a label value, a known value: the textfile collector serves it.
    writeFile(dir / "textfile" / "rollguard.prom",
              "# HELP rollguard_test_gauge A gauge planted by the test.\n"
              "# TYPE rollguard_test_gauge gauge\n"
              "rollguard_test_gauge{kind=\"q \\\"x\\\" \\\\ gr\xc3\xbc\xc3\x9f\"} 42.5\n");
    const ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    const std::uint16_t port = reserved.port();
    Process exporter({binary, "--web.listen-address=127.0.0.1:" + std::to_string(port),
                      "--collector.textfile.directory=" + (dir / "textfile").string(), "--log.level=warn"},
                     (dir / "ne.out").string(), (dir / "ne.err").string());
    INFO("node exporter stderr: " << readFile(dir / "ne.err"));
    REQUIRE(eventually([&] { return scrape(port).status == 200; }, 10s));

    const Scrape first = scrape(port);
    REQUIRE(first.status == 200);
    const ExpositionFormat format = formatFromContentType(first.content_type);
    INFO("content type: " << first.content_type);
    const ParseResult r = parseExposition(first.body, format);
    INFO((r.errors.empty() ? std::string() : r.errors.front().message()));
    REQUIRE(r.ok);
    CHECK(r.errors.empty());
    CHECK(r.samples.size() > 100);

    // Every sample line of the body is a parsed sample.
    std::size_t sample_lines = 0;
    std::size_t start = 0;
    while (start < first.body.size()) {
        std::size_t end = first.body.find('\n', start);
        if (end == std::string::npos) {
            end = first.body.size();
        }
        if (end > start && first.body[start] != '#') {
            ++sample_lines;
        }
        start = end + 1;
    }
    CHECK(r.samples.size() == sample_lines);

    const auto planted = r.select("rollguard_test_gauge");
    REQUIRE(planted.size() == 1);
    CHECK(planted.front()->value == 42.5);
    CHECK(*planted.front()->label("kind") == "q \"x\" \\ gr\xc3\xbc\xc3\x9f");
    CHECK(r.family("rollguard_test_gauge")->type == MetricType::Gauge);
    CHECK(r.family("rollguard_test_gauge")->help == "A gauge planted by the test.");

    const MetricFamily* build = r.family("node_exporter_build_info");
    REQUIRE(build != nullptr);
    CHECK(build->type == MetricType::Gauge);
    CHECK(r.select("node_exporter_build_info").front()->value == 1);
    const MetricFamily* cpu = r.family("node_cpu_seconds_total");
    REQUIRE(cpu != nullptr);
    CHECK(cpu->type == MetricType::Counter);
    CHECK_FALSE(r.select("node_cpu_seconds_total", {{"mode", LabelMatcher::Op::Equal, "idle"}}).empty());
    const MetricFamily* gc = r.family("go_gc_duration_seconds");
    REQUIRE(gc != nullptr);
    CHECK(gc->type == MetricType::Summary);
    CHECK(r.select("go_gc_duration_seconds", {{"quantile", LabelMatcher::Op::Equal, "0.5"}}).size() == 1);

    // The exporter counts the scrapes it served: the first scrape above is one increase.
    const std::vector<LabelMatcher> ok_code = {{"code", LabelMatcher::Op::Equal, "200"}};
    const auto served = [&](const ParseResult& result) {
        const auto s = result.select("promhttp_metric_handler_requests_total", ok_code);
        REQUIRE(s.size() == 1);
        return s.front()->value;
    };
    CounterTracker tracker;
    CHECK_FALSE(tracker.observe(served(r)).has_value());
    const Scrape second = scrape(port);
    const ParseResult r2 = parseExposition(second.body, formatFromContentType(second.content_type));
    REQUIRE(r2.ok);
    CHECK(tracker.observe(served(r2)) == 1.0);
}
