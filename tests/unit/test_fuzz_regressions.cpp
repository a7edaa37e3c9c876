// Inputs the fuzz targets (tests/fuzz, scripts/fuzz.sh) found, each with the behaviour
// the fix gives. The crash files themselves are in tests/fuzz/regressions/<target>/;
// the targets replay them, these tests pin the behaviour in the normal suite.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rollguard/agent/exposition.h"
#include "rollguard/agent/hooks.h"
#include "rollguard/agent/json_body.h"
#include "rollguard/agent/log_source.h"
#include "temp_dir.h"

using namespace rollguard::agent;
using rollguard::testing::readFile;
using rollguard::testing::TempDir;
using rollguard::testing::writeFile;

namespace {

std::string regression(const std::string& target, const std::string& name) {
    return readFile(std::filesystem::path(ROLLGUARD_SOURCE_DIR) / "tests/fuzz/regressions" / target / name);
}

/// fuzz_line_parser's config 0: latency at http.duration_ms (ms), error when
/// http.status >= 500: two wants under one nested object.
LogSourceConfig nestedConfig() {
    LogSourceConfig c;
    c.name = "nested_ms";
    c.latency = LatencyField{};
    c.latency->field = "http.duration_ms";
    c.latency->unit = LatencyUnit::Milliseconds;
    c.error.kind = ErrorPredicate::Kind::NumberAtLeast;
    c.error.field = "http.status";
    c.error.gte = 500;
    return c;
}

/// fuzz_line_parser's property on one batch: parseMany() gives every line of `text` what
/// parse() gives it alone (a separate parser, so neither's buffers are shared).
void checkBatchAgreesWithParse(const LogSourceConfig& config, std::string_view text) {
    LineParser batch(config);
    LineParser single(config);
    for (const auto& entry : batch.parseMany(text)) {
        const ParsedLine alone = single.parse(entry.line);
        CHECK(alone.ok == entry.parsed.ok);
        CHECK(alone.reason == entry.parsed.reason);
    }
}

/// A batch regression: `name`'s input (its first byte chose the fuzz target's config)
/// through parseMany(); its first line must be refused as invalid JSON, and every line
/// must get what parse() gives it.
void checkBatchRefusesFirstLine(const LogSourceConfig& config, const std::string& name, std::size_t lines) {
    const std::string input = regression("line_parser", name);
    REQUIRE(input.size() > 1);
    LineParser batch(config);
    const auto many = batch.parseMany(std::string_view(input).substr(1));
    REQUIRE(many.size() == lines);
    CHECK_FALSE(many[0].parsed.ok);
    CHECK(many[0].parsed.reason == BadLineReason::InvalidJson);
    checkBatchAgreesWithParse(config, std::string_view(input).substr(1));
}

}  // namespace

TEST_CASE("fuzz: a malformed nested object is invalid JSON and nothing more is read from it", "[fuzz][line_parser]") {
    // simdjson abandons the document (a null parser) when a lookup in a nested object
    // fails; the next lookup or the next top-level field dereferenced it.
    LineParser parser(nestedConfig());
    const ParsedLine bad = parser.parse(R"({"http":{""::})");
    CHECK_FALSE(bad.ok);
    CHECK(bad.reason == BadLineReason::InvalidJson);
    CHECK_FALSE(parser.parse(R"({"http":{"status":500,"duration_ms":1::},"z":1})").ok);

    const auto many = parser.parseMany("{\"http\":{\"\"::}}\n{\"http\":{\"status\":503,\"duration_ms\":250}}\n");
    REQUIRE(many.size() == 2);
    CHECK_FALSE(many[0].parsed.ok);
    CHECK(many[0].parsed.reason == BadLineReason::InvalidJson);
    REQUIRE(many[1].parsed.ok);
    CHECK(many[1].parsed.error);
    CHECK(many[1].parsed.latency_seconds == Approx(0.25));
}

TEST_CASE("fuzz: the batch that crashed parseMany gives every line what parse gives it", "[fuzz][line_parser]") {
    const std::string input = regression("line_parser", "nested-object-malformed-batch");
    REQUIRE(input.size() > 1);
    REQUIRE(input[0] == '\0');  // config 0
    LineParser batch(nestedConfig());
    REQUIRE_FALSE(batch.parseMany(std::string_view(input).substr(1)).empty());
    checkBatchAgreesWithParse(nestedConfig(), std::string_view(input).substr(1));
}

TEST_CASE("fuzz: parseMany does not trust an object followed by junk on its line", "[fuzz][line_parser]") {
    // The stream passed over `\u009}` after `{}` and began its next document at the next
    // line, so `{}\u009}` came out of parseMany as a good line.
    LineParser batch(nestedConfig());
    const auto many = batch.parseMany("{}\\u009}\n\xff\n{\"http\":{\"status\":500}}\n");
    REQUIRE(many.size() == 3);
    CHECK_FALSE(many[0].parsed.ok);
    CHECK(many[0].parsed.reason == BadLineReason::InvalidJson);
    CHECK(many[1].parsed.reason == BadLineReason::InvalidUtf8);
    CHECK(many[2].parsed.ok);
    const std::string input = regression("line_parser", "garbage-after-object-batch");
    checkBatchAgreesWithParse(nestedConfig(), std::string_view(input).substr(1));
}

TEST_CASE("fuzz: a field without a value is invalid JSON in a batch too", "[fuzz][line_parser]") {
    // On-Demand skipped the missing value of a field the config does not read: the batch
    // path evaluated `{"":}` (bad_timestamp here, a good event with another config)
    // where parse() says invalid JSON.
    LogSourceConfig config;
    config.name = "ns_event";
    config.time = TimeMode::Event;
    config.timestamp = "ts";
    config.labels = {{"host", "host"}};
    checkBatchRefusesFirstLine(config, "missing-value-batch", 2);
    LineParser plain(nestedConfig());
    CHECK_FALSE(plain.parseMany("{\"a\":}\n{\"a\":1,\"b\":]}\n")[0].parsed.ok);
}

TEST_CASE("fuzz: histogramQuantile stays inside the bucket despite rounding", "[fuzz][exposition]") {
    // -1 + (0.002 + 1) * 1 rounds to 0.0020000000000000018, above the bucket's bound.
    const double inf = std::numeric_limits<double>::infinity();
    const std::vector<std::pair<double, double>> buckets{{-1.0, 1.0}, {2e-3, 2.0}, {inf, 2.0}};
    CHECK(histogramQuantile(1.0, buckets) == 2e-3);
    CHECK(histogramQuantile(0.99, buckets) <= 2e-3);
    CHECK(histogramQuantile(0.25, buckets) == -1.0);
}

TEST_CASE("fuzz: a json body is one document and nothing after it", "[fuzz][json]") {
    JsonBody body;
    CHECK_FALSE(body.load(R"({"x":1}{"x":2})"));
    CHECK_FALSE(body.load("[1] x"));
    CHECK_FALSE(body.load("42"));
    CHECK(body.load(" {\"x\":1}\n"));
    std::string error;
    CHECK(body.numberAt("/x", error) == 1.0);
}

TEST_CASE("fuzz: the empty JSON pointer names the document, not a number", "[fuzz][json]") {
    // On simdjson On-Demand, a scalar getter on the document's root value was undefined
    // behaviour; the config refuses pointers without a leading '/', JsonBody must not rely on it.
    JsonBody body;
    REQUIRE(body.load(R"({"~":7,"m/n":"8.5","ok":true})"));
    std::string error;
    CHECK_FALSE(body.numberAt("", error).has_value());
    CHECK_FALSE(error.empty());
    CHECK(body.numberAt("/~0", error) == 7.0);
    CHECK(body.numberAt("/m~1n", error) == 8.5);
    CHECK(body.numberAt("/ok", error) == 1.0);
    error.clear();
    CHECK_FALSE(body.numberAt("/missing", error).has_value());
    CHECK(error == "no value at /missing");
}

TEST_CASE("fuzz: an env file with a quote that is never closed is not edited", "[fuzz][env_file]") {
    // Appending K="..." after `\0K="...` closed that quote: the new line became part of
    // another value and K stayed undefined (and every run appended it again).
    const std::string input = regression("env_file", "append-after-unterminated-quote");
    const std::size_t a = input.find('\0');
    const std::size_t b = input.find('\0', a + 1);
    REQUIRE(b != std::string::npos);
    const std::string text = input.substr(b + 1);
    CHECK(envUnterminatedQuoteLine(text) == std::optional<std::size_t>{2});
    CHECK(envUnterminatedQuoteLine("A=\"closed\non two lines\"\nB='x'\n") == std::nullopt);
    CHECK(envUnterminatedQuoteLine("# \"comment\nA=1\nB='open\nC=2\n") == std::optional<std::size_t>{3});

    TempDir dir;
    const auto path = std::filesystem::canonical(dir.path()) / "app.env";
    const std::string original = "A=\"never closed\nK=1\n";
    writeFile(path, original);
    HookConfig config;
    config.name = "edit";
    config.type = HookType::EnvFile;
    config.path = path.string();
    config.timeout = std::chrono::seconds{2};
    config.set = {{"K", "two words"}};
    const auto refused = applyEnvFile(config);
    CHECK_FALSE(refused.ok);
    CHECK(refused.message.find("line 1: a quoted value is never closed") != std::string::npos);
    CHECK(readFile(path) == original);

    config.set = {{"K", "1"}};  // already right: nothing to write, nothing to refuse
    CHECK(applyEnvFile(config).ok);
}

TEST_CASE("fuzz: RFC 3339 timestamps past the int64 nanosecond range are refused", "[fuzz][values]") {
    CHECK(parseRfc3339Nanos("4052-11-23T10:04:12+02:00") == std::nullopt);
    CHECK(parseRfc3339Nanos("9999-12-31T23:59:59Z") == std::nullopt);
    CHECK(parseRfc3339Nanos("1970-01-01T00:00:01Z") == std::optional<std::int64_t>{1'000'000'000});
    CHECK(parseRfc3339Nanos("2200-01-01T00:00:00Z").has_value());
}

TEST_CASE("fuzz: an object with a stray colon between fields is invalid JSON in a batch too", "[fuzz][line_parser]") {
    // The stream walked `{"":"":}` to its closing brace and evaluate() refused it for a
    // missing field, where parse() says invalid JSON: a refused line now takes parse()'s
    // word. fuzz_line_parser's config 5 (the first byte 0x7d picks it).
    LogSourceConfig config;
    config.name = "labels_only";
    config.error.kind = ErrorPredicate::Kind::IsTrue;
    config.error.field = "x.y.z.failed";
    config.labels = {{"a", "k8s.pod.name"}, {"b", "n"}, {"c", "v"}};
    config.time = TimeMode::Event;
    config.timestamp = "time.unix_nano";
    config.timestamp_unit = LatencyUnit::Nanoseconds;
    checkBatchRefusesFirstLine(config, "extra-colon-batch", 2);
}

TEST_CASE("fuzz: a skipped value followed by a colon is invalid JSON in a batch too", "[fuzz][line_parser]") {
    // The same line as above under fuzz_line_parser's config 1 (first byte 0x3d): the
    // stream skipped the unread value "" and took the ':' after it for the object's end,
    // so the batch path accepted `{"":"":}` as a good line. A skipped scalar must now be
    // followed by ',' or '}'.
    LogSourceConfig config;
    config.name = "seconds_in";
    config.latency = LatencyField{};
    config.latency->field = "latency";
    config.latency->unit = LatencyUnit::Seconds;
    config.error.kind = ErrorPredicate::Kind::StringIn;
    config.error.field = "level";
    config.error.in = {"error", "fatal", ""};
    config.labels = {{"method", "req.method"}, {"route", "req.route"}};
    checkBatchRefusesFirstLine(config, "extra-colon-accepted-batch", 2);
    // A skipped scalar followed by ',' or '}' is still a good line.
    LineParser batch(config);
    const auto good = batch.parseMany("{\"x\":\"\",\"latency\":0.5,\"level\":\"info\"}\n{\"latency\":1,\"x\":true}\n"
                                      "{ \"x\" : 12 , \"latency\" : 2, \"y\": null }\n");
    REQUIRE(good.size() == 3);
    for (const auto& entry : good) {
        CHECK(entry.parsed.ok);
    }
}
