// LineParser::parseMany (iterate_many over windows of lines) must return, line by line,
// exactly what parse() returns: same ok, reason, latency and error flag, whatever bad
// lines sit among good ones.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/agent/log_source.h"

using rollguard::agent::BadLineReason;
using rollguard::agent::ErrorPredicate;
using rollguard::agent::LatencyField;
using rollguard::agent::LatencyUnit;
using rollguard::agent::LineParser;
using rollguard::agent::LogSourceConfig;
using rollguard::agent::ParsedLine;
using rollguard::agent::ParsedLineOf;

namespace {

LogSourceConfig accessConfig() {
    LogSourceConfig c;
    c.name = "access";
    LatencyField lf;
    lf.field = "duration_ms";
    lf.unit = LatencyUnit::Milliseconds;
    c.latency = lf;
    c.error.kind = ErrorPredicate::Kind::NumberAtLeast;
    c.error.field = "status";
    c.error.gte = 500;
    return c;
}

/// Labels (strings, numbers, booleans, nested, missing) and event time: every line of a
/// batch must keep its own label values, not the last line's.
LogSourceConfig labelsTimeConfig() {
    LogSourceConfig c = accessConfig();
    c.name = "labels";
    c.labels = {{"route", "route"}, {"status", "status"}, {"zone", "http.zone"}};
    c.time = rollguard::agent::TimeMode::Event;
    c.timestamp = "ts";
    return c;
}

/// Nested fields, a duration string, and a predicate tree reading several fields.
LogSourceConfig nestedConfig() {
    LogSourceConfig c;
    c.name = "nested";
    LatencyField lf;
    lf.field = "http.took";
    lf.unit = LatencyUnit::Seconds;
    c.latency = lf;
    ErrorPredicate status;
    status.kind = ErrorPredicate::Kind::NumberInRanges;
    status.field = "http.status";
    status.ranges = {{500, 599}, {429, 429}};
    ErrorPredicate level;
    level.kind = ErrorPredicate::Kind::StringIn;
    level.field = "level";
    level.in = {"error", "fatal"};
    ErrorPredicate failed;
    failed.kind = ErrorPredicate::Kind::IsTrue;
    failed.field = "failed";
    c.error.kind = ErrorPredicate::Kind::Any;
    c.error.terms = {status, level, failed};
    return c;
}

/// Latency from two timestamps (exact integers), error when an exception is present.
LogSourceConfig timestampConfig() {
    LogSourceConfig c;
    c.name = "spans";
    LatencyField lf;
    lf.start_field = "start";
    lf.end_field = "end";
    lf.timestamp_unit = LatencyUnit::Nanoseconds;
    c.latency = lf;
    c.error.kind = ErrorPredicate::Kind::Present;
    c.error.field = "exception";
    return c;
}

/// Keys a raw comparison must get right: a quote, a backslash, longer than 8 and than
/// simdjson's padding.
LogSourceConfig oddKeysConfig() {
    LogSourceConfig c;
    c.name = "odd";
    LatencyField lf;
    lf.field = std::string(100, 'k');
    lf.unit = LatencyUnit::Milliseconds;
    c.latency = lf;
    ErrorPredicate quote;
    quote.kind = ErrorPredicate::Kind::Present;
    quote.field = "a\"b";
    ErrorPredicate slash;
    slash.kind = ErrorPredicate::Kind::Present;
    slash.field = "a\\b";
    ErrorPredicate eight;
    eight.kind = ErrorPredicate::Kind::IsTrue;
    eight.field = "12345678";
    c.error.kind = ErrorPredicate::Kind::Any;
    c.error.terms = {quote, slash, eight};
    return c;
}

std::string deep(int depth, bool closed) {
    std::string s = R"({"duration_ms":3,"status":200,"x":)";
    s.append(static_cast<std::size_t>(depth), '[');
    if (closed) {
        s.append(static_cast<std::size_t>(depth), ']');
        s += "}";
    }
    return s;
}

/// Every kind of line the batch path must classify exactly as parse() does.
std::vector<std::string> linePool() {
    std::vector<std::string> pool = {
        // good, in the shapes of all three configs
        R"({"ts":"2024-05-01T10:00:00.123Z","level":"info","method":"GET","route":"/api/v1/orders","status":200,"duration_ms":12.5,"bytes":512,"user_agent":"curl/8.5.0"})",
        R"({"status":503,"duration_ms":250})",
        R"({"status":"502","duration_ms":"1.5s"})",
        R"({"duration_ms":null,"status":404})",
        R"({"msg":"no fields we want"})",
        R"({})",
        R"(  {"status":500,"duration_ms":1}  )",
        "\t{\"status\":200,\"duration_ms\":7}\r",
        "{\"status\":200,\"duration_ms\":7}\r",
        R"({"http":{"status":429,"took":"35ms"},"level":"warn"})",
        R"({"http":{"status":200,"took":0.25},"level":"error"})",
        R"({"http":{"took":1e-3},"failed":true})",
        R"({"http":"not an object","level":"info"})",
        R"({"start":1700000000000000000,"end":1700000000250000000})",
        R"({"start":"2026-11-23T10:00:00Z","end":"2026-11-23T10:00:01.5+00:00","exception":{"type":"E"}})",
        R"({"start":1700000000000000000,"end":1600000000000000000})",
        R"({"start":"yesterday","end":"today"})",
        // escaped keys and values
        R"({"st\u0061tus":503,"duration\u005fms":5})",
        R"({"st\"atus":503,"duration_ms":5})",
        R"({"a\\b":1,"duration_ms":2,"status":200})",
        R"({"msg":"a \"quoted\" \\ \/ \u00e9 \ud83d\ude00","status":500,"duration_ms":3})",
        R"({"status":200,"duration_ms":4,"msg":"\x"})",
        R"({"status\x":200,"duration_ms":4})",
        // bad latency
        R"({"duration_ms":"fast","status":200})",
        R"({"duration_ms":-1,"status":200})",
        R"({"duration_ms":true})",
        R"({"duration_ms":{"v":1}})",
        R"({"duration_ms":1e400})",
        R"({"duration_ms":123456789012345678901234567890,"status":99999999999999999999999})",
        R"({"status":1e999,"duration_ms":1})",
        R"({"duration_ms":12x3,"status":200})",
        R"({"bytes":12x3,"duration_ms":1,"status":200})",
        // blank
        "",
        " ",
        "\t",
        "\r",
        " \r",
        "  \t \r",
        "\r\r",
        // not JSON / not an object
        "nope",
        "[1,2,3]",
        "[1,",
        "123",
        "-",
        "\"just a string\"",
        "\"unterminated",
        "true",
        "null",
        "nul",
        "1 2",
        "\f{\"status\":200}",
        // two documents, trailing junk
        R"({"status":200,"duration_ms":1}{"status":500,"duration_ms":2})",
        R"({"status":200,"duration_ms":1} {"status":500})",
        R"({"status":200,"duration_ms":1} x)",
        R"({"status":200,"duration_ms":1} 1)",
        R"({"status":200,"duration_ms":1}])",
        R"({"status":200,"duration_ms":1}})",
        R"({"status":200,"duration_ms":1},)",
        R"({"status":200,"duration_ms":1}:)",
        R"({"status":200,"duration_ms":1}{)",
        R"({"status":200,"duration_ms":1} [)",
        R"({"status":200,"duration_ms":1}"")",
        R"({"status":200,"duration_ms":1}[])",
        R"({"status":200,"duration_ms":1} ")",
        // truncated and malformed objects
        R"({"status":200,"duration_ms":1)",
        R"({"status":200,"duration_ms":)",
        R"({"status":200,"duration_ms")",
        R"({"status":200,)",
        R"({"status")",
        "{",
        "}",
        R"({"status":200 "duration_ms":1})",
        R"({"status":200,,"duration_ms":1})",
        R"({"status":200,"duration_ms":1,})",
        R"({status:200})",
        R"({"status":[1,2}})",
        R"({"msg":"unterminated)",
        R"({"msg":"unterminated}", "status":200)",
        R"({"status":500,"msg":"x)",
        "{\"msg\":\"raw\ttab\",\"status\":200,\"duration_ms\":1}",
        "{\"msg\":\"raw\x01control\",\"status\":200}",
        // invalid UTF-8, in values, keys and outside strings
        "{\"msg\":\"\xff\",\"status\":200,\"duration_ms\":1}",
        "{\"msg\":\"\xc0\xaf\",\"status\":200}",
        "{\"msg\":\"\xed\xa0\x80\",\"status\":200}",
        "{\"msg\":\"\xe2\x82\",\"status\":200}",
        "{\"\xf8\x88\x80\x80\x80\":1}",
        "\xef\xbb\xbf{\"status\":200}",
        "\xff",
        "{\"msg\":\"\xff",
        "{\"status\":200}\xff",
        // deep nesting
        deep(100, true),
        deep(2000, true),
        deep(50, false),
        R"({"http":{"status":{"code":500},"took":[1]}})",
    };
    // For oddKeysConfig.
    const std::string k100(100, 'k');
    pool.push_back("{\"" + k100 + "\":5}");
    pool.push_back("{\"" + k100 + "\":5,\"a\\\"b\":1}");
    pool.push_back("{\"" + k100 + "\":\"x\",\"a\\\\b\":1}");
    pool.push_back("{\"12345678\":true,\"1234567\":false}");
    pool.push_back("{\"1234567\":true,\"123456789\":true}");
    pool.push_back("{\"" + k100.substr(0, 99) + "\":5}");
    pool.push_back("{\"" + k100 + "k\":5}");
    pool.push_back("{\"a\":1,\"" + k100);
    // Longer than a parseMany window, good and bad.
    std::string big = R"({"status":500,"duration_ms":9,"blob":")";
    big.append(40 * 1024, 'b');
    pool.push_back(big + "\"}");
    pool.push_back(big);
    return pool;
}

bool sameResult(const ParsedLine& a, const ParsedLine& b) {
    if (a.labels.size() != b.labels.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.labels.size(); ++i) {
        if (a.labels[i] != b.labels[i]) {
            return false;
        }
    }
    return a.ok == b.ok && (a.ok || a.reason == b.reason) && a.error == b.error &&
           a.latency_seconds == b.latency_seconds && a.event_time_ns == b.event_time_ns;
}

std::string describe(const ParsedLine& p) {
    std::string out = std::string(p.ok ? "ok" : "bad ") + (p.ok ? "" : toString(p.reason)) +
                      " latency=" + std::to_string(p.latency_seconds) + " error=" + (p.error ? "1" : "0");
    if (p.event_time_ns) {
        out += " t=" + std::to_string(*p.event_time_ns);
    }
    for (const auto v : p.labels) {
        out += " label=" + std::string(v);
    }
    return out;
}

std::vector<std::string_view> splitLines(std::string_view text) {
    std::vector<std::string_view> out;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        out.push_back(text.substr(0, nl));
        if (nl == std::string_view::npos) {
            break;
        }
        text.remove_prefix(nl + 1);
    }
    return out;
}

/// parseMany(text) against parse() of every line with a separate parser; returns the
/// number of lines that were ok.
std::size_t requireEquivalent(const LogSourceConfig& config, LineParser& batch, const std::string& text) {
    LineParser single(config);
    const auto expected = splitLines(text);
    const auto got = batch.parseMany(text);
    REQUIRE(got.size() == expected.size());
    std::size_t ok = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        REQUIRE(got[i].line.data() == expected[i].data());
        REQUIRE(got[i].line.size() == expected[i].size());
        const ParsedLine want = single.parse(expected[i]);
        INFO("line " << i << ": " << std::string(expected[i].substr(0, 200)));
        INFO("parse: " << describe(want) << "  parseMany: " << describe(got[i].parsed));
        REQUIRE(sameResult(want, got[i].parsed));
        ok += want.ok ? 1 : 0;
    }
    return ok;
}

}  // namespace

TEST_CASE("parseMany equals parse for every kind of line, alone and between good lines", "[source][parser][batch]") {
    const auto pool = linePool();
    const std::string good = R"({"status":200,"duration_ms":5,"http":{"status":200,"took":0.01},"start":1,"end":2})";
    for (const auto& config : {accessConfig(), nestedConfig(), timestampConfig(), oddKeysConfig(), labelsTimeConfig()}) {
        LineParser batch(config);
        for (const auto& line : pool) {
            // Alone, with and without a final newline, and between good neighbours.
            requireEquivalent(config, batch, line);
            requireEquivalent(config, batch, line + "\n");
            requireEquivalent(config, batch, good + "\n" + line + "\n" + good + "\n");
            requireEquivalent(config, batch, good + "\n" + good + "\n" + line);
        }
    }
}

TEST_CASE("parseMany keeps every line's own labels and event time", "[source][parser][batch]") {
    const auto config = labelsTimeConfig();
    LineParser batch(config);
    std::string text;
    for (int i = 0; i < 3000; ++i) {
        text += R"({"ts":")" + std::string("2026-11-23T10:00:0") + std::to_string(i % 10) + "." + std::to_string(i) +
                R"(Z","route":"/r)" + std::to_string(i % 37) + R"(","status":)" + std::to_string(200 + i % 7) +
                (i % 3 == 0 ? R"(,"http":{"zone":true})" : "") + R"(,"duration_ms":)" + std::to_string(i % 50) + "}\n";
        if (i % 500 == 0) {
            text += "not json\n";
        }
    }
    CHECK(requireEquivalent(config, batch, text) == 3000);
    const auto got = batch.parseMany(text);
    // Line 0 is event 0, line 1 "not json", line 2 event 1.
    REQUIRE(got[0].parsed.labels.size() == 3);
    CHECK(got[0].parsed.labels[0] == "/r0");
    CHECK(got[0].parsed.labels[1] == "200");
    CHECK(got[0].parsed.labels[2] == "true");
    CHECK(!got[1].parsed.ok);
    REQUIRE(got[2].parsed.labels.size() == 3);
    CHECK(got[2].parsed.labels[0] == "/r1");
    CHECK(got[2].parsed.labels[1] == "201");
    CHECK(got[2].parsed.labels[2] == "");
}

TEST_CASE("parseMany: a bad line does not make its good neighbours bad", "[source][parser][batch]") {
    const auto config = accessConfig();
    LineParser batch(config);
    const std::string good = R"({"status":503,"duration_ms":40})";
    for (const std::string bad : {"{\"status\":200", "{\"msg\":\"\xff\"}", "[1]", "{\"msg\":\"open", "{} {}"}) {
        std::string text;
        for (int i = 0; i < 300; ++i) {
            text += i == 150 ? bad : good;
            text += '\n';
        }
        const auto got = batch.parseMany(text);
        REQUIRE(got.size() == 300);
        for (std::size_t i = 0; i < got.size(); ++i) {
            INFO("line " << i << " with bad line " << bad);
            REQUIRE(got[i].parsed.ok == (i != 150));
            if (i != 150) {
                CHECK(got[i].parsed.error);
                CHECK(got[i].parsed.latency_seconds == Approx(0.04));
            }
        }
        CHECK(requireEquivalent(config, batch, text) == 299);
    }
}

TEST_CASE("parseMany: blank lines, empty input and line views", "[source][parser][batch]") {
    const auto config = accessConfig();
    LineParser batch(config);
    CHECK(batch.parseMany("").empty());
    const std::string text = "\n \n{\"status\":500,\"duration_ms\":2}\r\n\t\r\n\n{\"status\":200}";
    const auto got = batch.parseMany(text);
    REQUIRE(got.size() == 6);
    CHECK(got[0].line.empty());
    CHECK(got[1].line == " ");
    CHECK(got[2].line == "{\"status\":500,\"duration_ms\":2}\r");
    CHECK(got[3].line == "\t\r");
    CHECK(got[5].line == "{\"status\":200}");
    for (const std::size_t blank : {0, 1, 3, 4}) {
        CHECK_FALSE(got[blank].parsed.ok);
        CHECK(got[blank].parsed.reason == BadLineReason::InvalidJson);
    }
    CHECK(got[2].parsed.ok);
    CHECK(got[2].parsed.error);
    CHECK(got[2].parsed.latency_seconds == Approx(0.002));
    CHECK(got[5].parsed.ok);
    CHECK_FALSE(got[5].parsed.error);
    CHECK(got[5].parsed.latency_seconds < 0);
    CHECK(requireEquivalent(config, batch, text) == 2);
}

TEST_CASE("parseMany equals parse on random mixes of good and bad lines", "[source][parser][batch]") {
    const auto pool = linePool();
    // Mostly good lines so that many windows pass whole through iterate_many, with bad
    // ones at random places so that others fall back.
    std::vector<std::string> good;
    for (int i = 0; i < 40; ++i) {
        good.push_back(R"({"ts":"2024-05-01T10:00:00Z","status":)" + std::to_string(200 + (i * 37) % 400) +
                       R"(,"duration_ms":)" + std::to_string(i * 1.25) + R"(,"http":{"status":)" +
                       std::to_string(100 + i * 13) + R"(,"took":"12ms"},"level":"info","start":)" +
                       std::to_string(1000 + i) + R"(,"end":)" + std::to_string(2000 + i * 7) + "}");
    }
    std::mt19937 rng(20261123);
    for (const auto& config : {accessConfig(), nestedConfig(), timestampConfig(), oddKeysConfig()}) {
        LineParser batch(config);
        for (int trial = 0; trial < 60; ++trial) {
            const int lines = 1 + static_cast<int>(rng() % 600);
            const unsigned bad_per_mille = trial % 3 == 0 ? 0 : (trial % 3 == 1 ? 5 : 200);
            std::string text;
            for (int i = 0; i < lines; ++i) {
                if (rng() % 1000 < bad_per_mille) {
                    text += pool[rng() % pool.size()];
                } else {
                    text += good[rng() % good.size()];
                }
                if (i + 1 < lines || rng() % 2 == 0) {
                    text += '\n';
                }
            }
            INFO("trial " << trial);
            requireEquivalent(config, batch, text);
        }
    }
}

TEST_CASE("parseMany: documents spanning lines, lines holding two documents", "[source][parser][batch]") {
    // The stream sees documents, not lines: here the document count equals the non-blank
    // line count while documents and lines do not match up one to one.
    const std::string two = R"({"status":500,"duration_ms":1}{"status":200,"duration_ms":2})";
    const std::string split = "{\"status\":503,\n\"duration_ms\":3}";
    const std::string good = R"({"status":200,"duration_ms":4})";
    const auto config = accessConfig();
    LineParser batch(config);
    CHECK(requireEquivalent(config, batch, two + "\n" + split + "\n") == 0);
    CHECK(requireEquivalent(config, batch, split + "\n" + two + "\n") == 0);
    CHECK(requireEquivalent(config, batch, good + "\n" + two + "\n" + split + "\n" + good + "\n") == 2);
    CHECK(requireEquivalent(config, batch, "[\n" + good + "\n]\n" + good + "\n") == 2);
    CHECK(requireEquivalent(config, batch, "{\"a\":\n{\"b\":1}}\n" + good + "\n") == 1);
    CHECK(requireEquivalent(config, batch, good + " 1\n2\n" + good + "\n") == 1);
}

TEST_CASE("keys are matched exactly, escaped or not, short or long", "[source][parser][batch]") {
    // parse() and parseMany() share the key comparison, so check its answers directly.
    const auto config = oddKeysConfig();
    LineParser parser(config);
    const std::string k100(100, 'k');
    const auto check = [&](const std::string& line, bool ok, double latency, bool error) {
        INFO(line);
        for (const ParsedLine& p : {parser.parse(line), parser.parseMany(line + "\n").front().parsed}) {
            REQUIRE(p.ok == ok);
            CHECK(p.latency_seconds == Approx(latency));
            CHECK(p.error == error);
        }
    };
    check("{\"" + k100 + "\":5}", true, 0.005, false);
    check("{\"" + k100 + "k\":5}", true, -1, false);
    check("{\"" + k100.substr(0, 99) + "\":5}", true, -1, false);
    check("{\"" + k100.substr(0, 99) + "\\u006b\":5}", true, 0.005, false);
    check(R"({"a\"b":1})", true, -1, true);
    check(R"({"a\\b":1})", true, -1, true);
    check(R"({"a\\\"b":1})", true, -1, false);
    check(R"({"ab":1,"a":{"b":1}})", true, -1, false);
    check(R"({"12345678":true})", true, -1, true);
    check(R"({"1234567":true,"123456789":true,"12345678x":true})", true, -1, false);
    check(R"({"1234\u0035678":true})", true, -1, true);
}

TEST_CASE("parseMany: several bad lines in one window, adjacent and apart", "[source][parser][batch]") {
    // The stream starts again after each line it cannot vouch for, within a budget; past
    // it the window's lines go one by one. Every result must still be parse()'s.
    const auto config = accessConfig();
    LineParser batch(config);
    const std::string good = R"({"status":200,"duration_ms":12,"route":"/api/v1/orders","user_agent":"curl/8.5.0"})";
    const std::vector<std::string> bad = {"{\"status\":200", "[1]", "{} x", "not json", "{\"duration_ms\":\"fast\"}",
                                          "{\"msg\":\"\xff\"}", "{\"status\":200}}"};
    for (const std::vector<int>& at : {std::vector<int>{0}, {1, 2}, {10, 11, 12, 13}, {5, 100, 200, 299},
                                      {298, 299}, {0, 50, 51, 52, 53, 54, 55, 56, 57, 150, 151, 152}}) {
        std::string text;
        std::size_t b = 0;
        for (int i = 0; i < 300; ++i) {
            text += std::find(at.begin(), at.end(), i) != at.end() ? bad[b++ % bad.size()] : good;
            text += '\n';
        }
        INFO("bad lines at " << at.size() << " places, first " << at.front());
        const std::size_t ok = requireEquivalent(config, batch, text);
        // "{\"duration_ms\":\"fast\"}" is bad_latency; every other bad kind is bad too.
        CHECK(ok == 300 - at.size());
    }
}
