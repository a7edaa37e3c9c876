// Smoke test of the PrometheusServer fixture (a real Prometheus scraping a real node
// exporter on loopback) through rollguard's own fetch engine: an instant query answers
// a vector, a malformed one an HTTP 400 with Prometheus' error envelope.
#include <chrono>
#include <string>
#include <string_view>

#include <catch2/catch.hpp>
#include <simdjson.h>

#include "prometheus_server.h"
#include "rollguard/agent/scraper.h"

using namespace rollguard::testing;
using namespace rollguard::agent;
using namespace std::chrono_literals;

namespace {

ScrapeResponse query(const PrometheusServer& server, const std::string& promql) {
    ScrapeRequest r;
    r.url = server.url() + "/api/v1/query?query=" + urlEncode(promql);
    r.headers = {"Accept: application/json"};
    r.timeout = 10s;
    r.max_bytes = 1 << 20;
    Scraper scraper;
    auto responses = scraper.fetchAll({r});
    REQUIRE(responses.size() == 1);
    return responses.front();
}

std::string_view field(const simdjson::dom::element& doc, const char* name) {
    std::string_view value;
    if (doc[name].get(value) != simdjson::SUCCESS) {
        return {};
    }
    return value;
}

}  // namespace

TEST_CASE("prometheus fixture answers instant queries over the HTTP API", "[integration][promql]") {
    if (!PrometheusServer::available()) {
        WARN("SKIPPED: prometheus or prometheus-node-exporter is not installed (run scripts/install-deps.sh)");
        return;
    }
    const auto started = std::chrono::steady_clock::now();
    PrometheusServer server;
    const auto ready_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    // A figure for the log, never an assertion.
    WARN("prometheus fixture ready (up{job=\"node\"} has a sample) after " << ready_ms << " ms");
    INFO("url " << server.url() << ", exporter port " << server.exporterPort());
    // One server for all checks (each start costs ~6 s), so blocks rather than SECTIONs.

    {
        INFO("up: status success, a vector with the node job's target at 1");
        const ScrapeResponse resp = query(server, "up");
        INFO(resp.message << "\n" << resp.body);
        REQUIRE(resp.ok());
        CHECK(resp.status == 200);
        CHECK(resp.content_type.find("application/json") == 0);
        simdjson::dom::parser parser;
        simdjson::dom::element doc;
        REQUIRE(parser.parse(resp.body).get(doc) == simdjson::SUCCESS);
        CHECK(field(doc, "status") == "success");
        CHECK(field(doc["data"], "resultType") == "vector");
        simdjson::dom::array result;
        REQUIRE(doc["data"]["result"].get(result) == simdjson::SUCCESS);
        bool found = false;
        for (const simdjson::dom::element series : result) {
            if (field(series["metric"], "job") != "node") {
                continue;
            }
            found = true;
            CHECK(field(series["metric"], "__name__") == "up");
            CHECK(field(series["metric"], "instance") == "127.0.0.1:" + std::to_string(server.exporterPort()));
            // "value": [<unix seconds as a number>, "<sample as a string>"]
            simdjson::dom::array value;
            REQUIRE(series["value"].get(value) == simdjson::SUCCESS);
            REQUIRE(value.size() == 2);
            double ts = 0;
            CHECK(value.at(0).get(ts) == simdjson::SUCCESS);
            CHECK(ts > 0);
            std::string_view sample;
            REQUIRE(value.at(1).get(sample) == simdjson::SUCCESS);
            CHECK(sample == "1");
        }
        CHECK(found);
    }
    {
        INFO("a malformed query: HTTP 400, status error, errorType bad_data");
        const ScrapeResponse resp = query(server, "up{");
        INFO(resp.message << "\n" << resp.body);
        CHECK_FALSE(resp.ok());
        CHECK(resp.error == ScrapeErrorKind::HttpStatus);
        CHECK(resp.status == 400);
        // The fetch engine keeps non-2xx bodies, so the promql source can report why.
        simdjson::dom::parser parser;
        simdjson::dom::element doc;
        REQUIRE(parser.parse(resp.body).get(doc) == simdjson::SUCCESS);
        CHECK(field(doc, "status") == "error");
        CHECK(field(doc, "errorType") == "bad_data");
        CHECK(field(doc, "error").find("parse error") != std::string_view::npos);
    }
    {
        INFO("a query with an empty result: success and an empty vector");
        const ScrapeResponse resp = query(server, "up{job=\"rollguard-no-such-job\"}");
        INFO(resp.message << "\n" << resp.body);
        REQUIRE(resp.ok());
        simdjson::dom::parser parser;
        simdjson::dom::element doc;
        REQUIRE(parser.parse(resp.body).get(doc) == simdjson::SUCCESS);
        CHECK(field(doc, "status") == "success");
        simdjson::dom::array result;
        REQUIRE(doc["data"]["result"].get(result) == simdjson::SUCCESS);
        CHECK(result.size() == 0);
    }
}
