// The scrape fetch engine against real loopback HTTP servers.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "http_receiver.h"
#include "rollguard/agent/exposition.h"
#include "rollguard/agent/scraper.h"

using rollguard::agent::jitteredOffset;
using rollguard::agent::ScrapeErrorKind;
using rollguard::agent::Scraper;
using rollguard::agent::ScrapeRequest;
using rollguard::agent::ScrapeResponse;
using rollguard::agent::scrapeErrorKindFromCurlCode;
using rollguard::testing::HttpReceiver;
using namespace std::chrono_literals;

namespace {

ScrapeRequest requestFor(const std::string& url, std::chrono::nanoseconds timeout = 5s) {
    ScrapeRequest r;
    r.url = url;
    r.timeout = timeout;
    r.max_bytes = 1 << 20;
    return r;
}

ScrapeResponse fetchOne(const ScrapeRequest& request) {
    Scraper scraper;
    auto responses = scraper.fetchAll({request});
    REQUIRE(responses.size() == 1);
    return responses.front();
}

// `for i in $(seq 100); do printf 'rollguard_gzip_test_total 42\n'; done | gzip -cn9 | xxd -i`
// (2900 bytes that compress to 74, so a cap between the two tells them apart).
const unsigned char kGzipBody[] = {
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x2b, 0xca, 0xcf, 0xc9, 0x49,
    0x2f, 0x4d, 0x2c, 0x4a, 0x89, 0x4f, 0xaf, 0xca, 0x2c, 0x88, 0x2f, 0x49, 0x2d, 0x2e, 0x89,
    0x2f, 0xc9, 0x2f, 0x49, 0xcc, 0x51, 0x30, 0x31, 0xe2, 0x2a, 0x1a, 0x95, 0x1c, 0x95, 0x1c,
    0x95, 0x1c, 0x95, 0x1c, 0x95, 0x1c, 0x95, 0x1c, 0x95, 0x1c, 0x95, 0x1c, 0x95, 0x1c, 0x95,
    0x1c, 0x95, 0x24, 0x24, 0x09, 0x00, 0xf0, 0xd2, 0x88, 0xb3, 0x54, 0x0b, 0x00, 0x00};

std::string gzipPlain() {
    std::string out;
    for (int i = 0; i < 100; ++i) {
        out += "rollguard_gzip_test_total 42\n";
    }
    return out;
}

}  // namespace

TEST_CASE("scraper fetches ten targets concurrently in one fetchAll call", "[scraper]") {
    std::vector<std::unique_ptr<HttpReceiver>> receivers;
    std::vector<ScrapeRequest> requests;
    for (int i = 0; i < 10; ++i) {
        receivers.push_back(std::make_unique<HttpReceiver>());
        receivers.back()->setDelay(200ms);
        receivers.back()->setBody("target_" + std::to_string(i) + " 1\n",
                                  {{"Content-Type", "text/plain; version=0.0.4"}});
        requests.push_back(requestFor(receivers.back()->url("/metrics")));
    }
    Scraper scraper;
    const auto start = std::chrono::steady_clock::now();
    const auto responses = scraper.fetchAll(requests);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    WARN("10 targets with 200 ms each took "
         << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms");

    REQUIRE(responses.size() == 10);
    for (int i = 0; i < 10; ++i) {
        INFO("target " << i);
        const auto& r = responses[static_cast<std::size_t>(i)];
        CHECK(r.ok());
        CHECK(r.error == ScrapeErrorKind::None);
        CHECK(r.status == 200);
        CHECK(r.message.empty());
        CHECK(r.body == "target_" + std::to_string(i) + " 1\n");  // responses keep request order
        CHECK(r.content_type == "text/plain; version=0.0.4");
        CHECK(r.duration > 0ns);
        const auto seen = receivers[static_cast<std::size_t>(i)]->requests();
        REQUIRE(seen.size() == 1);
        CHECK(seen[0].method == "GET");
        CHECK(seen[0].target == "/metrics");
    }
}

TEST_CASE("scraper reuses its handles across fetchAll calls", "[scraper]") {
    HttpReceiver receiver;
    receiver.setBody("up 1\n");
    Scraper scraper;
    for (int round = 0; round < 3; ++round) {
        const auto responses = scraper.fetchAll({requestFor(receiver.url("/a")), requestFor(receiver.url("/b"))});
        REQUIRE(responses.size() == 2);
        CHECK(responses[0].ok());
        CHECK(responses[1].ok());
        CHECK(responses[1].body == "up 1\n");
    }
    CHECK(receiver.requests().size() == 6);
    CHECK(scraper.fetchAll({}).empty());
}

TEST_CASE("scraper reports a hanging target as a timeout and keeps the others", "[scraper]") {
    HttpReceiver slow;
    slow.setDelay(10min);  // answers only when the test ends: a timeout on any machine
    HttpReceiver fast;
    Scraper scraper;
    const auto responses = scraper.fetchAll({requestFor(slow.url(), 200ms), requestFor(fast.url())});
    REQUIRE(responses.size() == 2);
    CHECK(responses[0].error == ScrapeErrorKind::Timeout);
    CHECK_FALSE(responses[0].message.empty());
    CHECK(responses[1].ok());
}

TEST_CASE("scraper bounds a slow-drip response by the timeout", "[scraper]") {
    HttpReceiver drip;
    drip.setBody(std::string(200, 'x'));
    drip.setDrip(50ms);  // at least 10 s for the whole body, however fast the machine
    // The headers must arrive within the timeout, on a loaded machine too: 2 s.
    const auto r = fetchOne(requestFor(drip.url(), 2s));
    CHECK(r.error == ScrapeErrorKind::Timeout);
    CHECK(r.status == 200);  // the headers did arrive
    CHECK(r.body.size() < 200);
}

TEST_CASE("scraper reports a refused connection as connect", "[scraper]") {
    const rollguard::testing::ReservedPort port;  // refused: bound, never listening, and nobody else's
    const auto r = fetchOne(requestFor(port.url("/metrics")));
    CHECK(r.error == ScrapeErrorKind::Connect);
    CHECK(r.status == 0);
    CHECK_FALSE(r.message.empty());
}

TEST_CASE("scraper maps curl error codes to kinds", "[scraper]") {
    // Numeric CURLcode values (stable ABI), so the test does not include curl.
    CHECK(scrapeErrorKindFromCurlCode(0) == ScrapeErrorKind::None);     // CURLE_OK
    CHECK(scrapeErrorKindFromCurlCode(6) == ScrapeErrorKind::Dns);      // COULDNT_RESOLVE_HOST
    CHECK(scrapeErrorKindFromCurlCode(5) == ScrapeErrorKind::Dns);      // COULDNT_RESOLVE_PROXY
    CHECK(scrapeErrorKindFromCurlCode(7) == ScrapeErrorKind::Connect);  // COULDNT_CONNECT
    CHECK(scrapeErrorKindFromCurlCode(28) == ScrapeErrorKind::Timeout); // OPERATION_TIMEDOUT
    CHECK(scrapeErrorKindFromCurlCode(35) == ScrapeErrorKind::Tls);     // SSL_CONNECT_ERROR
    CHECK(scrapeErrorKindFromCurlCode(60) == ScrapeErrorKind::Tls);     // PEER_FAILED_VERIFICATION
    CHECK(scrapeErrorKindFromCurlCode(61) == ScrapeErrorKind::Decode);  // BAD_CONTENT_ENCODING
    CHECK(scrapeErrorKindFromCurlCode(63) == ScrapeErrorKind::TooLarge);// FILESIZE_EXCEEDED
    CHECK(scrapeErrorKindFromCurlCode(1) == ScrapeErrorKind::Other);    // UNSUPPORTED_PROTOCOL
    CHECK(rollguard::agent::toString(ScrapeErrorKind::Dns) == "dns");
    CHECK(rollguard::agent::toString(ScrapeErrorKind::Connect) == "connect");
    CHECK(rollguard::agent::toString(ScrapeErrorKind::Timeout) == "timeout");
    CHECK(rollguard::agent::toString(ScrapeErrorKind::Tls) == "tls");
    CHECK(rollguard::agent::toString(ScrapeErrorKind::HttpStatus) == "http_status");
    CHECK(rollguard::agent::toString(ScrapeErrorKind::TooLarge) == "too_large");
    CHECK(rollguard::agent::toString(ScrapeErrorKind::Decode) == "decode");
    CHECK(rollguard::agent::toString(ScrapeErrorKind::Other) == "other");
    CHECK(rollguard::agent::toString(ScrapeErrorKind::None) == "none");
}

// A ".invalid" name (RFC 6761) is only answered locally by some resolvers; this host's
// resolver is off-host and tests may not use the network, so the live case is opt-in.
TEST_CASE("scraper reports an unresolvable name as dns when ROLLGUARD_TEST_DNS is set", "[scraper]") {
    const char* opt_in = std::getenv("ROLLGUARD_TEST_DNS");
    if (opt_in == nullptr || std::string(opt_in) != "1") {
        WARN("skipped: set ROLLGUARD_TEST_DNS=1 where the resolver answers .invalid without the network");
        return;
    }
    const auto r = fetchOne(requestFor("http://rollguard-scrape-test.invalid/metrics"));
    CHECK(r.error == ScrapeErrorKind::Dns);
}

TEST_CASE("scraper reports a non-2xx answer as http_status", "[scraper]") {
    HttpReceiver receiver;
    receiver.setStatus(500);
    const auto r = fetchOne(requestFor(receiver.url()));
    CHECK(r.error == ScrapeErrorKind::HttpStatus);
    CHECK(r.status == 500);
    CHECK(r.message == "HTTP 500");
    CHECK(r.body == "500 Internal Server Error\n");
}

TEST_CASE("scraper does not follow redirects", "[scraper]") {
    HttpReceiver target;
    HttpReceiver redirector;
    redirector.setStatus(302);
    redirector.setBody("", {{"Location", target.url("/elsewhere")}});
    ScrapeRequest req = requestFor(redirector.url());
    req.bearer_token = "secret";
    const auto r = fetchOne(req);
    CHECK(r.error == ScrapeErrorKind::HttpStatus);
    CHECK(r.status == 302);
    CHECK(target.requests().empty());
}

TEST_CASE("scraper refuses schemes other than http and https", "[scraper]") {
    const auto r = fetchOne(requestFor("file:///etc/hostname"));
    CHECK(r.error == ScrapeErrorKind::Other);
    CHECK(r.body.empty());
    CHECK_FALSE(r.message.empty());
}

TEST_CASE("scraper aborts a body over the cap as too_large", "[scraper]") {
    HttpReceiver receiver;
    receiver.setBody(std::string(100 * 1024, 'x'));
    ScrapeRequest req = requestFor(receiver.url());
    req.max_bytes = 1000;
    const auto r = fetchOne(req);
    CHECK(r.error == ScrapeErrorKind::TooLarge);
    CHECK(r.message == "response over 1000 bytes");
    CHECK(r.body.size() <= 1000);

    SECTION("a body exactly at the cap is fine") {
        receiver.setBody(std::string(1000, 'y'));
        const auto at_cap = fetchOne(req);
        CHECK(at_cap.ok());
        CHECK(at_cap.body.size() == 1000);
    }
}

TEST_CASE("scraper decodes a gzip body and caps the decoded size", "[scraper]") {
    HttpReceiver receiver;
    receiver.setBody(std::string(reinterpret_cast<const char*>(kGzipBody), sizeof kGzipBody),
                     {{"Content-Encoding", "gzip"}});
    ScrapeRequest req = requestFor(receiver.url());
    const auto r = fetchOne(req);
    CHECK(r.ok());
    CHECK(r.body == gzipPlain());
    REQUIRE(receiver.requests().size() == 1);
    CHECK(receiver.requests()[0].header("accept-encoding") == "gzip");

    SECTION("the cap applies to the decoded bytes") {
        req.max_bytes = 1000;  // fits the 74 compressed bytes, not the 2900 decoded ones
        REQUIRE(sizeof kGzipBody < req.max_bytes);
        const auto capped = fetchOne(req);
        CHECK(capped.error == ScrapeErrorKind::TooLarge);
    }
    SECTION("without accept_gzip nothing is advertised and the bytes come back raw") {
        req.accept_gzip = false;
        const auto raw = fetchOne(req);
        CHECK(raw.ok());
        CHECK(raw.body.size() == sizeof kGzipBody);
        CHECK(receiver.requests().back().header("accept-encoding").empty());
    }
}

TEST_CASE("scraper sends Accept, bearer token and basic auth headers", "[scraper]") {
    HttpReceiver receiver;
    ScrapeRequest req = requestFor(receiver.url("/metrics"));
    req.headers = {std::string("Accept: ") + rollguard::agent::kScrapeAcceptHeader, "X-Scope-OrgID: tenant-1"};

    SECTION("bearer") {
        req.bearer_token = "t0ken";
        REQUIRE(fetchOne(req).ok());
        const auto seen = receiver.requests();
        REQUIRE(seen.size() == 1);
        CHECK(seen[0].header("accept") == rollguard::agent::kScrapeAcceptHeader);
        CHECK(seen[0].header("x-scope-orgid") == "tenant-1");
        CHECK(seen[0].header("authorization") == "Bearer t0ken");
        CHECK(seen[0].header("user-agent").rfind("rollguard/", 0) == 0);
    }
    SECTION("basic") {
        req.basic_user = "alice";
        req.basic_password = "secret";
        REQUIRE(fetchOne(req).ok());
        const auto seen = receiver.requests();
        REQUIRE(seen.size() == 1);
        CHECK(seen[0].header("accept") == rollguard::agent::kScrapeAcceptHeader);
        CHECK(seen[0].header("authorization") == "Basic YWxpY2U6c2VjcmV0");  // base64("alice:secret")
    }
    SECTION("no credentials") {
        REQUIRE(fetchOne(req).ok());
        CHECK(receiver.requests().at(0).header("authorization").empty());
    }
}

TEST_CASE("scraper refuses unusable requests without any I/O", "[scraper]") {
    HttpReceiver receiver;
    ScrapeRequest header_injection = requestFor(receiver.url());
    header_injection.headers = {"X-A: 1\r\nX-Injected: 1"};
    ScrapeRequest token_injection = requestFor(receiver.url());
    token_injection.bearer_token = "abc\nX-Injected: 1";
    ScrapeRequest both_auth = requestFor(receiver.url());
    both_auth.bearer_token = "t";
    both_auth.basic_user = "u";
    ScrapeRequest no_timeout = requestFor(receiver.url());
    no_timeout.timeout = 0ns;

    Scraper scraper;
    const auto responses = scraper.fetchAll({header_injection, token_injection, both_auth, no_timeout});
    REQUIRE(responses.size() == 4);
    for (const auto& r : responses) {
        CHECK(r.error == ScrapeErrorKind::Other);
        CHECK_FALSE(r.message.empty());
        CHECK(r.status == 0);
    }
    CHECK(receiver.requests().empty());
}

TEST_CASE("jitteredOffset is stable and within the interval", "[scraper]") {
    const auto interval = std::chrono::nanoseconds{15s};
    std::set<long long> distinct;
    for (int i = 0; i < 50; ++i) {
        const std::string key = "http://10.0.0." + std::to_string(i) + ":9100/metrics";
        const auto offset = jitteredOffset(key, interval);
        CHECK(offset >= 0ns);
        CHECK(offset < interval);
        CHECK(jitteredOffset(key, interval) == offset);
        distinct.insert(offset.count());
    }
    CHECK(distinct.size() > 40);  // spread out, not aligned
    // FNV-1a 64 of "" is the offset basis 14695981039346656037.
    CHECK(jitteredOffset("", std::chrono::nanoseconds{1000}) == std::chrono::nanoseconds{14695981039346656037ull % 1000});
    CHECK(jitteredOffset("x", 0ns) == 0ns);
    CHECK(jitteredOffset("x", -5s) == 0ns);
    CHECK(jitteredOffset("x", 1ns) == 0ns);
}
