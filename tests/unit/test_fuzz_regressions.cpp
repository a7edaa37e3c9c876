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
#include "rollguard/rules/selection.h"
#include "line_parser_configs.h"
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
LogSourceConfig nestedConfig() { return rollguard::fuzz::lineParserConfigs().at(0); }

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

/// A saved line_parser input replayed as the fuzz target does: its first byte chooses
/// the config (returned), the rest goes through parseMany() and must agree with parse().
LogSourceConfig replayLineParser(const std::string& name) {
    const std::string input = regression("line_parser", name);
    REQUIRE(input.size() > 1);
    LogSourceConfig config = rollguard::fuzz::lineParserConfigFor(input);
    checkBatchAgreesWithParse(config, std::string_view(input).substr(1));
    return config;
}

/// A batch regression: `name`'s input replayed as above, with `lines` lines; the first
/// must be refused as invalid JSON. Returns the config.
LogSourceConfig checkBatchRefusesFirstLine(const std::string& name, std::size_t lines) {
    LogSourceConfig config = replayLineParser(name);
    const std::string input = regression("line_parser", name);
    LineParser batch(config);
    const auto many = batch.parseMany(std::string_view(input).substr(1));
    REQUIRE(many.size() == lines);
    CHECK_FALSE(many[0].parsed.ok);
    CHECK(many[0].parsed.reason == BadLineReason::InvalidJson);
    return config;
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
    REQUIRE(regression("line_parser", "nested-object-malformed-batch").at(0) == '\0');  // config 0
    replayLineParser("nested-object-malformed-batch");
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
    replayLineParser("garbage-after-object-batch");
}

TEST_CASE("fuzz: a field without a value is invalid JSON in a batch too", "[fuzz][line_parser]") {
    // On-Demand skipped the missing value of a field the config does not read: the batch
    // path evaluated `{"":}` (bad_timestamp here, a good event with another config)
    // where parse() says invalid JSON.
    checkBatchRefusesFirstLine("missing-value-batch", 2);
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
    // missing field, where parse() says invalid JSON. fuzz_line_parser's config 5 (the
    // first byte 0x7d picks it).
    checkBatchRefusesFirstLine("extra-colon-batch", 2);
}

TEST_CASE("fuzz: a skipped value followed by a colon is invalid JSON in a batch too", "[fuzz][line_parser]") {
    // The same line as above under fuzz_line_parser's config 1 (first byte 0x3d): the
    // stream skipped the unread value "" and took the ':' after it for the object's end,
    // so the batch path accepted `{"":"":}` as a good line.
    const LogSourceConfig config = checkBatchRefusesFirstLine("extra-colon-accepted-batch", 2);
    // Skipped values of every kind, with blanks around them, still make good lines.
    LineParser batch(config);
    const auto good = batch.parseMany("{\"x\":\"\",\"latency\":0.5,\"level\":\"info\"}\n{\"latency\":1,\"x\":true}\n"
                                      "{ \"x\" : 12 , \"latency\" : 2, \"y\": null }\n");
    REQUIRE(good.size() == 3);
    for (const auto& entry : good) {
        CHECK(entry.parsed.ok);
    }
}

TEST_CASE("fuzz: a nested field without a value is invalid JSON in a batch too", "[fuzz][line_parser]") {
    // fuzz_line_parser's config 2 (first byte 0x02). On-Demand skipped the unread value
    // of "u31" by counting brackets and took the '}' for it, so the stream's document
    // ended at depth 0 on the last line of its window and the batch path accepted
    // `{"t":{"u31":}}`. The batch path now takes a line only when its walk consumed
    // exactly the line's tokens and the line ends with '}', as parse() requires.
    const LogSourceConfig config = replayLineParser("nested-missing-value-batch");
    const std::string input = regression("line_parser", "nested-missing-value-batch");
    REQUIRE(input.size() > 1);
    LineParser batch(config);
    const auto many = batch.parseMany(std::string_view(input).substr(1));
    REQUIRE(many.size() == 3);
    CHECK(many[1].line == R"({"t":{"u31":}})");
    CHECK_FALSE(many[1].parsed.ok);
    CHECK(many[1].parsed.reason == BadLineReason::InvalidJson);
    // The same line last in a window, first in a window, and between good lines.
    const std::string good = R"({"t":{"us":1500,"u31":2},"status":200})";
    for (const std::string& text : {std::string(R"({"t":{"u31":}})") + "\n",
                                   std::string(R"({"t":{"u31":}})") + "\n" + good + "\n",
                                   good + "\n" + R"({"t":{"u31":}})" + "\n" + good + "\n"}) {
        checkBatchAgreesWithParse(config, text);
        LineParser fresh(config);
        for (const auto& entry : fresh.parseMany(text)) {
            CHECK(entry.parsed.ok == (entry.line == good));
        }
    }
}

TEST_CASE("fuzz: an object whose line goes on past the indexed stream is not trusted", "[fuzz][line_parser]") {
    // fuzz_line_parser's config 0 (first byte 0x00). Stage 1 of the stream dropped
    // `\u70,"status":429}` as the truncated tail of an incomplete document, so the walk of
    // `{}` ended at the end of what was indexed, which looked like the window's end.
    replayLineParser("truncated-tail-batch");
    LineParser batch(nestedConfig());
    const auto many = batch.parseMany("{\"http\":{\"status\":200}}\n{}\\u70,\"status\":429}\n");
    REQUIRE(many.size() == 2);
    CHECK(many[0].parsed.ok);
    CHECK_FALSE(many[1].parsed.ok);
    CHECK(many[1].parsed.reason == BadLineReason::InvalidJson);
}

TEST_CASE("fuzz: the last line of a batch is trusted only when the stream ends after it", "[fuzz][line_parser]") {
    // fuzz_line_parser's config 4 (first byte 0x04). Stage 1 of the stream left out
    // `\xf2}` as an incomplete document and checked its UTF-8 only in a second pass, so
    // the walk of the line's object ended where the indexed stream ended and the line
    // came out as invalid JSON (an unreadable "start") where parse() says invalid UTF-8.
    const LogSourceConfig config = replayLineParser("utf8-in-tail-batch");
    // The same with a good line before it: that one is read from the stream, the last
    // line is refused for its bytes.
    LineParser batch(config);
    const auto many = batch.parseMany("{\"start\":1,\"timing\":{\"end\":3}}\n{\"start\":1} \"\xf2\"\n");
    REQUIRE(many.size() == 2);
    CHECK(many[0].parsed.ok);
    CHECK(many[0].parsed.latency_seconds == Approx(0.002));
    CHECK_FALSE(many[1].parsed.ok);
    CHECK(many[1].parsed.reason == BadLineReason::InvalidUtf8);
}

TEST_CASE("fuzz: a walk that runs off the indexed stream is not trusted", "[fuzz][line_parser]") {
    // fuzz_line_parser's config 5 (first byte 0x7d). Stage 1 of the stream left out the
    // second line as an incomplete document; the walk of `{"":"":nul}` then read the
    // sentinel position after the indexed part, whose byte is the input after the window:
    // a '}' (the third line's first byte) closed the object and the walk seemed to end
    // at the second line. The stream then ended instead of beginning a document there.
    const LogSourceConfig config = checkBatchRefusesFirstLine("extra-colon-null-batch", 3);
    // The same window followed by a line that does not begin with '}'.
    checkBatchAgreesWithParse(config, "{\"\":\"\":nul}\n{\"level\":1,\"req\":ne}:}\n {\"n\":1}");
}

TEST_CASE("fuzz: a catastrophic-backtracking label matcher finishes (RE2, linear time)", "[fuzz][selection]") {
    // Not a crash the fuzzer found but the case that motivated RE2: std::regex would take
    // time exponential in the run of 'a's here; RE2 answers at once.
    const std::string input = regression("label_matcher", "catastrophic-backtracking");
    const auto newline = input.find('\n');
    REQUIRE(newline != std::string::npos);
    std::string error;
    const auto m = rollguard::rules::LabelMatcher::make("l", rollguard::rules::LabelMatcher::Op::Regex,
                                                        input.substr(0, newline), error);
    REQUIRE(m != nullptr);
    CHECK(input.substr(0, newline) == "(a+)+$");
    CHECK_FALSE(m->matches(std::string_view(input).substr(newline + 1)));
}
