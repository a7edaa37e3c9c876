#include <catch2/catch.hpp>

#include <string>
#include <utility>
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

namespace {

LogSourceConfig latencyConfig(const std::string& field, LatencyUnit unit) {
    LogSourceConfig c;
    c.name = "test";
    LatencyField lf;
    lf.field = field;
    lf.unit = unit;
    c.latency = lf;
    return c;
}

LogSourceConfig statusConfig(double gte = 500) {
    LogSourceConfig c = latencyConfig("duration_ms", LatencyUnit::Milliseconds);
    c.error.kind = ErrorPredicate::Kind::NumberAtLeast;
    c.error.field = "status";
    c.error.gte = gte;
    return c;
}

void requireBad(const ParsedLine& p, BadLineReason reason) {
    REQUIRE_FALSE(p.ok);
    CHECK(p.reason == reason);
}

}  // namespace

TEST_CASE("line parser scales numeric latency by the configured unit", "[source][parser]") {
    const std::string line = R"({"ts":"2024-05-01T10:00:00Z","d":250,"msg":"ok"})";
    struct Case {
        LatencyUnit unit;
        double seconds;
    };
    for (const Case& c : {Case{LatencyUnit::Nanoseconds, 250e-9}, Case{LatencyUnit::Microseconds, 250e-6},
                          Case{LatencyUnit::Milliseconds, 0.25}, Case{LatencyUnit::Seconds, 250.0}}) {
        LineParser parser(latencyConfig("d", c.unit));
        const ParsedLine p = parser.parse(line);
        REQUIRE(p.ok);
        CHECK(p.latency_seconds == Approx(c.seconds));
        CHECK_FALSE(p.error);
    }
    LineParser ms(latencyConfig("d", LatencyUnit::Milliseconds));
    CHECK(ms.parse(R"({"d":12.5})").latency_seconds == Approx(0.0125));
    CHECK(ms.parse(R"({"d":0})").latency_seconds == 0.0);
    CHECK(ms.parse(R"({"d":1e3})").latency_seconds == Approx(1.0));
}

TEST_CASE("line parser reads duration strings with their own unit", "[source][parser]") {
    LineParser parser(latencyConfig("latency", LatencyUnit::Seconds));
    auto seconds = [&](const std::string& value) {
        const ParsedLine p = parser.parse(R"({"latency":")" + value + R"("})");
        REQUIRE(p.ok);
        return p.latency_seconds;
    };
    CHECK(seconds("12.5ms") == Approx(0.0125));
    CHECK(seconds("1.2s") == Approx(1.2));
    CHECK(seconds("350us") == Approx(350e-6));
    CHECK(seconds("350\xC2\xB5s") == Approx(350e-6));
    CHECK(seconds("800ns") == Approx(800e-9));
    CHECK(seconds("1m3.5s") == Approx(63.5));
    CHECK(seconds("12 ms") == Approx(0.012));
    // A bare numeric string uses the configured unit.
    CHECK(seconds("12.5") == Approx(12.5));
    LineParser ms(latencyConfig("latency", LatencyUnit::Milliseconds));
    const ParsedLine p = ms.parse(R"({"latency":"12.5"})");
    REQUIRE(p.ok);
    CHECK(p.latency_seconds == Approx(0.0125));
}

TEST_CASE("line parser follows dotted paths into nested objects", "[source][parser]") {
    LogSourceConfig c = latencyConfig("http.timing.duration_ms", LatencyUnit::Milliseconds);
    c.error.kind = ErrorPredicate::Kind::NumberAtLeast;
    c.error.field = "http.status";
    c.error.gte = 500;
    LineParser parser(c);

    ParsedLine p = parser.parse(
        R"({"msg":"x","http":{"status":503,"method":"GET","timing":{"queue_ms":1,"duration_ms":42}},"z":[1,2]})");
    REQUIRE(p.ok);
    CHECK(p.latency_seconds == Approx(0.042));
    CHECK(p.error);

    // Order of keys does not matter; the error field comes after the latency here.
    p = parser.parse(R"({"http":{"timing":{"duration_ms":7},"status":200}})");
    REQUIRE(p.ok);
    CHECK(p.latency_seconds == Approx(0.007));
    CHECK_FALSE(p.error);

    // A path through a non-object is a missing field, not a bad line.
    p = parser.parse(R"({"http":"GET /"})");
    REQUIRE(p.ok);
    CHECK(p.latency_seconds < 0);
    CHECK_FALSE(p.error);
}

TEST_CASE("line parser error predicate: number at least, numeric strings count", "[source][parser]") {
    LineParser parser(statusConfig(500));
    CHECK(parser.parse(R"({"status":500,"duration_ms":1})").error);
    CHECK(parser.parse(R"({"status":503.0})").error);
    CHECK(parser.parse(R"({"status":"503"})").error);
    CHECK_FALSE(parser.parse(R"({"status":499})").error);
    CHECK_FALSE(parser.parse(R"({"status":"200"})").error);
    CHECK_FALSE(parser.parse(R"({"status":"Internal Error"})").error);
    CHECK_FALSE(parser.parse(R"({"status":true})").error);
    CHECK_FALSE(parser.parse(R"({"status":null})").error);
    const ParsedLine missing = parser.parse(R"({"duration_ms":3})");
    REQUIRE(missing.ok);
    CHECK_FALSE(missing.error);
}

TEST_CASE("line parser error predicate: string in set is exact and case-sensitive", "[source][parser]") {
    LogSourceConfig c;
    c.error.kind = ErrorPredicate::Kind::StringIn;
    c.error.field = "level";
    c.error.in = {"error", "fatal"};
    LineParser parser(c);
    CHECK(parser.parse(R"({"level":"error"})").error);
    CHECK(parser.parse(R"({"level":"fatal","msg":"boom"})").error);
    CHECK_FALSE(parser.parse(R"({"level":"ERROR"})").error);
    CHECK_FALSE(parser.parse(R"({"level":"errors"})").error);
    CHECK_FALSE(parser.parse(R"({"level":"info"})").error);
    CHECK_FALSE(parser.parse(R"({"level":1})").error);
    const ParsedLine p = parser.parse(R"({"msg":"no level"})");
    REQUIRE(p.ok);
    CHECK_FALSE(p.error);
    CHECK(p.latency_seconds < 0);
}

TEST_CASE("line parser error predicate: boolean true", "[source][parser]") {
    LogSourceConfig c;
    c.error.kind = ErrorPredicate::Kind::IsTrue;
    c.error.field = "failed";
    LineParser parser(c);
    CHECK(parser.parse(R"({"failed":true})").error);
    CHECK_FALSE(parser.parse(R"({"failed":false})").error);
    CHECK_FALSE(parser.parse(R"({"failed":"true"})").error);
    CHECK_FALSE(parser.parse(R"({"failed":1})").error);
    CHECK(parser.parse(R"({"failed":false})").ok);
}

TEST_CASE("line parser: missing latency is an event without latency, null too", "[source][parser]") {
    LineParser parser(statusConfig());
    ParsedLine p = parser.parse(R"({"status":200})");
    REQUIRE(p.ok);
    CHECK(p.latency_seconds == -1.0);
    p = parser.parse(R"({"status":200,"duration_ms":null})");
    REQUIRE(p.ok);
    CHECK(p.latency_seconds == -1.0);
    p = parser.parse("{}");
    REQUIRE(p.ok);
    CHECK(p.latency_seconds == -1.0);
}

TEST_CASE("line parser rejects invalid JSON", "[source][parser]") {
    LineParser parser(statusConfig());
    requireBad(parser.parse(""), BadLineReason::InvalidJson);
    requireBad(parser.parse("hello world"), BadLineReason::InvalidJson);
    requireBad(parser.parse("nope"), BadLineReason::InvalidJson);
    requireBad(parser.parse(R"({"status":500,"duration_ms":12)"), BadLineReason::InvalidJson);  // truncated
    requireBad(parser.parse(R"({"status":500 "duration_ms":12})"), BadLineReason::InvalidJson);
    requireBad(parser.parse(R"({"status":500,"msg":"unterminated})"), BadLineReason::InvalidJson);
    requireBad(parser.parse(R"({"a":{"b":[1,2}})"), BadLineReason::InvalidJson);
    requireBad(parser.parse(R"({"status":200}{"status":500})"), BadLineReason::InvalidJson);
    requireBad(parser.parse(R"({"status":200} trailing)"), BadLineReason::InvalidJson);
    requireBad(parser.parse(R"({"status":5x0,"duration_ms":1})"), BadLineReason::InvalidJson);
    requireBad(parser.parse(R"({"duration_ms":1-2})"), BadLineReason::InvalidJson);
}

TEST_CASE("line parser: valid JSON that is not an object", "[source][parser]") {
    LineParser parser(statusConfig());
    requireBad(parser.parse("[1,2,3]"), BadLineReason::NotAnObject);
    requireBad(parser.parse("42"), BadLineReason::NotAnObject);
    requireBad(parser.parse(R"("a string")"), BadLineReason::NotAnObject);
    requireBad(parser.parse("true"), BadLineReason::NotAnObject);
    requireBad(parser.parse("null"), BadLineReason::NotAnObject);
}

TEST_CASE("line parser: bad latency values", "[source][parser]") {
    LineParser parser(statusConfig());
    requireBad(parser.parse(R"({"duration_ms":-1})"), BadLineReason::BadLatency);
    requireBad(parser.parse(R"({"duration_ms":"abc"})"), BadLineReason::BadLatency);
    requireBad(parser.parse(R"({"duration_ms":"-5ms"})"), BadLineReason::BadLatency);
    requireBad(parser.parse(R"({"duration_ms":"12 parsecs"})"), BadLineReason::BadLatency);
    requireBad(parser.parse(R"({"duration_ms":"nan"})"), BadLineReason::BadLatency);
    requireBad(parser.parse(R"({"duration_ms":""})"), BadLineReason::BadLatency);
    requireBad(parser.parse(R"({"duration_ms":{"value":3}})"), BadLineReason::BadLatency);
    requireBad(parser.parse(R"({"duration_ms":[3]})"), BadLineReason::BadLatency);
    requireBad(parser.parse(R"({"duration_ms":true})"), BadLineReason::BadLatency);
}

TEST_CASE("line parser strips a trailing CR and accepts surrounding whitespace", "[source][parser]") {
    LineParser parser(statusConfig());
    CHECK(parser.parse("  {\"status\":500} \t").error);
    CHECK(parser.parse("{\"status\":500}\r").ok);
    const ParsedLine p = parser.parse("{\"status\":502,\"duration_ms\":8}\r");
    REQUIRE(p.ok);
    CHECK(p.error);
    CHECK(p.latency_seconds == Approx(0.008));
}

TEST_CASE("line parser: latency and error on the same field, escaped keys", "[source][parser]") {
    LogSourceConfig c = latencyConfig("d", LatencyUnit::Milliseconds);
    c.error.kind = ErrorPredicate::Kind::NumberAtLeast;
    c.error.field = "d";
    c.error.gte = 1000;
    LineParser parser(c);
    ParsedLine p = parser.parse(R"({"d":1500})");
    REQUIRE(p.ok);
    CHECK(p.error);
    CHECK(p.latency_seconds == Approx(1.5));

    // A key written with an escape is still the key.
    p = parser.parse(R"({"\u0064":20})");
    REQUIRE(p.ok);
    CHECK(p.latency_seconds == Approx(0.02));
    CHECK_FALSE(p.error);
}

TEST_CASE("line parser reuses its buffer across short and long lines", "[source][parser]") {
    LineParser parser(statusConfig());
    std::string big = R"({"status":200,"pad":")" + std::string(100000, 'x') + R"(","duration_ms":3})";
    for (int i = 0; i < 3; ++i) {
        ParsedLine p = parser.parse(big);
        REQUIRE(p.ok);
        CHECK(p.latency_seconds == Approx(0.003));
        p = parser.parse(R"({"status":500,"duration_ms":4})");
        REQUIRE(p.ok);
        CHECK(p.error);
        CHECK(p.latency_seconds == Approx(0.004));
    }
}

namespace {

ErrorPredicate leaf(ErrorPredicate::Kind kind, const std::string& field) {
    ErrorPredicate p;
    p.kind = kind;
    p.field = field;
    return p;
}

ErrorPredicate combine(ErrorPredicate::Kind kind, std::vector<ErrorPredicate> terms) {
    ErrorPredicate p;
    p.kind = kind;
    p.terms = std::move(terms);
    return p;
}

LogSourceConfig errorConfig(ErrorPredicate p) {
    LogSourceConfig c = latencyConfig("duration_ms", LatencyUnit::Milliseconds);
    c.error = std::move(p);
    return c;
}

LogSourceConfig timestampConfig(LatencyUnit unit = LatencyUnit::Seconds) {
    LogSourceConfig c;
    c.name = "test";
    LatencyField lf;
    lf.start_field = "start";
    lf.end_field = "end";
    lf.timestamp_unit = unit;
    c.latency = lf;
    return c;
}

/// Latency of a line {"start": <start>, "end": <end>}, both written as JSON values.
double between(LineParser& parser, const std::string& start, const std::string& end) {
    const ParsedLine p = parser.parse(R"({"start":)" + start + R"(,"end":)" + end + "}");
    INFO(start << " -> " << end);
    REQUIRE(p.ok);
    return p.latency_seconds;
}

}  // namespace

TEST_CASE("line parser error predicate: number in inclusive ranges", "[source][parser]") {
    ErrorPredicate p = leaf(ErrorPredicate::Kind::NumberInRanges, "status");
    p.ranges = {{500, 599}, {429, 429}};
    LineParser parser(errorConfig(p));
    for (const char* yes : {"500", "599", "503", "429", "599.0", "\"429\"", "\"502\""}) {
        INFO(yes);
        const ParsedLine r = parser.parse(std::string(R"({"status":)") + yes + R"(,"duration_ms":2})");
        REQUIRE(r.ok);
        CHECK(r.error);
        CHECK(r.latency_seconds == Approx(0.002));
    }
    for (const char* no : {"499", "499.99", "599.5", "600", "428", "430", "-503", "\"5xx\"", "true", "null",
                           "[503]", "{\"code\":503}"}) {
        INFO(no);
        const ParsedLine r = parser.parse(std::string(R"({"status":)") + no + "}");
        REQUIRE(r.ok);
        CHECK_FALSE(r.error);
    }
    const ParsedLine missing = parser.parse(R"({"duration_ms":1})");
    REQUIRE(missing.ok);
    CHECK_FALSE(missing.error);
}

TEST_CASE("line parser error predicate: present means there and not null", "[source][parser]") {
    LineParser parser(errorConfig(leaf(ErrorPredicate::Kind::Present, "exception")));
    CHECK(parser.parse(R"({"exception":{"type":"IOError","trace":["a","b"]}})").error);
    CHECK(parser.parse(R"({"exception":"boom"})").error);
    CHECK(parser.parse(R"({"exception":""})").error);
    CHECK(parser.parse(R"({"exception":false})").error);
    CHECK(parser.parse(R"({"exception":0})").error);
    CHECK(parser.parse(R"({"exception":[]})").error);
    const ParsedLine null_value = parser.parse(R"({"exception":null,"duration_ms":5})");
    REQUIRE(null_value.ok);
    CHECK_FALSE(null_value.error);
    CHECK(null_value.latency_seconds == Approx(0.005));
    CHECK_FALSE(parser.parse(R"({"msg":"fine"})").error);
    CHECK_FALSE(parser.parse(R"({"exceptions":1})").error);

    LineParser nested(errorConfig(leaf(ErrorPredicate::Kind::Present, "error.stack")));
    CHECK(nested.parse(R"({"error":{"code":1,"stack":"at main"}})").error);
    CHECK_FALSE(nested.parse(R"({"error":{"code":1,"stack":null}})").error);
    CHECK_FALSE(nested.parse(R"({"error":{"code":1}})").error);
    CHECK_FALSE(nested.parse(R"({"error":"stack"})").error);
}

TEST_CASE("line parser error predicate: any and all, nested", "[source][parser]") {
    ErrorPredicate server = leaf(ErrorPredicate::Kind::NumberInRanges, "http.status");
    server.ranges = {{500, 599}};
    ErrorPredicate level = leaf(ErrorPredicate::Kind::StringIn, "level");
    level.in = {"error", "fatal"};
    ErrorPredicate slow = leaf(ErrorPredicate::Kind::NumberAtLeast, "duration_ms");
    slow.gte = 1000;
    // 5xx, or a panic, or (an error-level line that is also slow)
    const ErrorPredicate p =
        combine(ErrorPredicate::Kind::Any,
                {server, leaf(ErrorPredicate::Kind::Present, "panic"),
                 combine(ErrorPredicate::Kind::All, {level, slow})});
    LineParser parser(errorConfig(p));

    ParsedLine r = parser.parse(R"({"http":{"status":503},"level":"info","duration_ms":3})");
    REQUIRE(r.ok);
    CHECK(r.error);
    CHECK(r.latency_seconds == Approx(0.003));
    CHECK(parser.parse(R"({"http":{"status":200},"panic":"nil map"})").error);
    CHECK(parser.parse(R"({"level":"fatal","duration_ms":1500})").error);
    CHECK(parser.parse(R"({"duration_ms":1000,"http":{"status":200},"level":"error"})").error);
    CHECK_FALSE(parser.parse(R"({"level":"fatal","duration_ms":999})").error);
    CHECK_FALSE(parser.parse(R"({"level":"info","duration_ms":1500})").error);
    CHECK_FALSE(parser.parse(R"({"http":{"status":404},"panic":null,"level":"warn"})").error);
    CHECK_FALSE(parser.parse("{}").error);

    // The latency field doubles as a predicate field: both read from one value.
    r = parser.parse(R"({"level":"error","duration_ms":2000})");
    REQUIRE(r.ok);
    CHECK(r.error);
    CHECK(r.latency_seconds == Approx(2.0));

    // all with one failing term is false; all over fields under one parent.
    ErrorPredicate retried = leaf(ErrorPredicate::Kind::IsTrue, "req.retried");
    ErrorPredicate code = leaf(ErrorPredicate::Kind::NumberAtLeast, "req.code");
    code.gte = 400;
    LineParser both(errorConfig(combine(ErrorPredicate::Kind::All, {retried, code})));
    CHECK(both.parse(R"({"req":{"code":404,"retried":true}})").error);
    CHECK(both.parse(R"({"req":{"retried":true,"code":"500"}})").error);
    CHECK_FALSE(both.parse(R"({"req":{"code":404,"retried":false}})").error);
    CHECK_FALSE(both.parse(R"({"req":{"code":200,"retried":true}})").error);
    CHECK_FALSE(both.parse(R"({"req":{"retried":true}})").error);
}

TEST_CASE("line parser: predicates on a field and on a field inside it", "[source][parser]") {
    ErrorPredicate type = leaf(ErrorPredicate::Kind::StringIn, "exception.type");
    type.in = {"Timeout"};
    ErrorPredicate timeout_or_gone = combine(
        ErrorPredicate::Kind::Any,
        {combine(ErrorPredicate::Kind::All, {leaf(ErrorPredicate::Kind::Present, "exception"), type}),
         leaf(ErrorPredicate::Kind::IsTrue, "exception.fatal")});
    LineParser parser(errorConfig(timeout_or_gone));
    CHECK(parser.parse(R"({"exception":{"type":"Timeout"}})").error);
    CHECK(parser.parse(R"({"exception":{"type":"IOError","fatal":true}})").error);
    CHECK_FALSE(parser.parse(R"({"exception":{"type":"IOError"}})").error);
    CHECK_FALSE(parser.parse(R"({"exception":"Timeout"})").error);
    CHECK_FALSE(parser.parse(R"({"msg":"ok"})").error);
    // Two predicates on the very same field share its value.
    ErrorPredicate low = leaf(ErrorPredicate::Kind::NumberAtLeast, "code");
    low.gte = 10;
    ErrorPredicate band = leaf(ErrorPredicate::Kind::NumberInRanges, "code");
    band.ranges = {{0, 20}};
    LineParser same(errorConfig(combine(ErrorPredicate::Kind::All, {low, band})));
    CHECK(same.parse(R"({"code":15})").error);
    CHECK_FALSE(same.parse(R"({"code":25})").error);
    CHECK_FALSE(same.parse(R"({"code":5})").error);
}

TEST_CASE("line parser: malformed values of predicate fields are invalid JSON", "[source][parser]") {
    LineParser parser(errorConfig(combine(ErrorPredicate::Kind::Any, {leaf(ErrorPredicate::Kind::Present, "a"),
                                                                      leaf(ErrorPredicate::Kind::IsTrue, "b.c")})));
    requireBad(parser.parse(R"({"b":{"c":tru}})"), BadLineReason::InvalidJson);
    requireBad(parser.parse(R"({"a":nul})"), BadLineReason::InvalidJson);
    requireBad(parser.parse(R"({"a":1,"b":{"c":true})"), BadLineReason::InvalidJson);
    CHECK(parser.parse(R"({"b":{"c":true}})").error);
}

TEST_CASE("line parser: latency between two RFC 3339 timestamps", "[source][parser]") {
    LineParser parser(timestampConfig());
    CHECK(between(parser, R"("2026-11-23T10:00:00Z")", R"("2026-11-23T10:00:01.5Z")") == Approx(1.5));
    CHECK(between(parser, R"("2026-11-23T10:00:00.123456Z")", R"("2026-11-23T10:00:00.123789Z")") ==
          Approx(333e-6).epsilon(1e-9));
    // Nine fraction digits subtract exactly even though the epoch is ~1.8e9 s.
    CHECK(between(parser, R"("2026-11-23T10:00:00.000000001Z")", R"("2026-11-23T10:00:00.000000251Z")") ==
          Approx(250e-9).epsilon(1e-12));
    // Digits past nanoseconds are dropped.
    CHECK(between(parser, R"("2026-11-23T10:00:00.1234567891Z")", R"("2026-11-23T10:00:00.1234567899Z")") == 0.0);
    // Zones: the same instant written in three zones, lower-case t and z, a space for T.
    CHECK(between(parser, R"("2026-11-23T12:00:00+02:00")", R"("2026-11-23T10:00:00Z")") == 0.0);
    CHECK(between(parser, R"("2026-11-23t10:00:00z")", R"("2026-11-23T05:30:00.25-04:30")") == Approx(0.25));
    CHECK(between(parser, R"("2026-11-23 10:00:00Z")", R"("2026-11-23T10:00:00.75+00:00")") == Approx(0.75));
    // Across midnight, a month end, a leap day, a year end.
    CHECK(between(parser, R"("2026-11-30T23:59:59.5Z")", R"("2026-12-01T00:00:00.5Z")") == Approx(1.0));
    CHECK(between(parser, R"("2028-02-28T12:00:00Z")", R"("2028-03-01T12:00:00Z")") == Approx(2 * 86400.0));
    CHECK(between(parser, R"("2026-12-31T23:00:00-01:00")", R"("2027-01-01T00:00:01Z")") == Approx(1.0));
    CHECK(between(parser, R"("1969-12-31T23:59:59Z")", R"("1970-01-01T00:00:01Z")") == Approx(2.0));
    // A leap second is the second after :59.
    CHECK(between(parser, R"("2016-12-31T23:59:59Z")", R"("2016-12-31T23:59:60Z")") == Approx(1.0));
}

TEST_CASE("line parser: latency between epoch timestamps", "[source][parser]") {
    LineParser seconds(timestampConfig(LatencyUnit::Seconds));
    CHECK(between(seconds, "1764000000", "1764000002") == Approx(2.0));
    CHECK(between(seconds, "1764000000.25", "1764000000.75") == Approx(0.5));
    CHECK(between(seconds, R"("1764000000")", R"("1764000003.5")") == Approx(3.5));
    CHECK(between(seconds, "1764000000", R"(" 1764000001 ")") == Approx(1.0));
    // Mixed forms: an RFC 3339 start and an epoch end.
    CHECK(between(seconds, R"("2025-11-24T16:00:00Z")", "1764000010") == Approx(10.0));

    LineParser ms(timestampConfig(LatencyUnit::Milliseconds));
    CHECK(between(ms, "1764000000000", "1764000000250") == Approx(0.25));
    CHECK(between(ms, "1764000000000.5", "1764000000001") == Approx(0.0005));
    CHECK(between(ms, R"("1764000000000")", R"("1764000000012")") == Approx(0.012));

    LineParser us(timestampConfig(LatencyUnit::Microseconds));
    CHECK(between(us, "1764000000000000", "1764000000000350") == Approx(350e-6));

    // Nanosecond epochs do not fit a double exactly; integers are subtracted exactly.
    LineParser ns(timestampConfig(LatencyUnit::Nanoseconds));
    CHECK(between(ns, "1764000000123456789", "1764000000123457089") == Approx(300e-9).epsilon(1e-12));
    CHECK(between(ns, R"("1764000000123456789")", R"("1764000000123456790")") == Approx(1e-9).epsilon(1e-12));
    CHECK(between(ns, "-5", "5") == Approx(10e-9));
}

TEST_CASE("line parser: bad timestamps are bad latency, missing ones no latency", "[source][parser]") {
    LineParser parser(timestampConfig());
    const auto bad = [&](const std::string& start, const std::string& end) {
        INFO(start << " -> " << end);
        requireBad(parser.parse(R"({"start":)" + start + R"(,"end":)" + end + "}"), BadLineReason::BadLatency);
    };
    const std::string ok = R"("2026-11-23T10:00:00Z")";
    bad(R"("2026-11-23T10:00:01Z")", ok);  // end before start
    bad("1764000001", "1764000000");
    bad(R"("2026-11-23T10:00:00.000000002Z")", R"("2026-11-23T10:00:00.000000001Z")");
    for (const char* junk :
         {R"("2026-11-23T10:00:00")",           // no zone
          R"("2026-11-23T10:00Z")",             // no seconds
          R"("2026-11-23")",                    // a date
          R"("2026-11-23X10:00:00Z")",          // bad separator
          R"("2026-13-01T10:00:00Z")",          // month 13
          R"("2026-02-29T10:00:00Z")",          // not a leap year
          R"("2026-04-31T10:00:00Z")",          // April has 30 days
          R"("2026-11-23T24:00:00Z")",          // hour 24
          R"("2026-11-23T10:60:00Z")",          // minute 60
          R"("2026-11-23T10:00:61Z")",          // second 61
          R"("2026-11-23T10:00:00.Z")",         // empty fraction
          R"("2026-11-23T10:00:00+0200")",      // offset without colon
          R"("2026-11-23T10:00:00+24:00")",     // offset hour 24
          R"("2026-11-23T10:00:00Z ")",         // trailing junk
          R"("2026-11-23T10:00:00ZZ")",
          R"("2026-1x-23T10:00:00Z")",
          R"("yesterday")", R"("")", R"("12ms")", R"("nan")", R"("inf")", "true", "[1]", R"({"t":1})",
          "1e300"}) {
        bad(junk, ok);
        bad(ok, junk);
    }
    // Without one of the timestamps the event has no latency (like a missing field).
    for (const std::string line : {R"({"start":"2026-11-23T10:00:00Z"})", R"({"end":1764000000})",
                                   R"({"start":null,"end":"2026-11-23T10:00:00Z"})", R"({"msg":"x"})"}) {
        INFO(line);
        const ParsedLine p = parser.parse(line);
        REQUIRE(p.ok);
        CHECK(p.latency_seconds == -1.0);
    }
    // A missing timestamp does not excuse a malformed one.
    requireBad(parser.parse(R"({"start":"soon"})"), BadLineReason::BadLatency);
}

TEST_CASE("line parser: invalid UTF-8 anywhere is its own reason", "[source][parser]") {
    LineParser parser(statusConfig());
    const std::string bad_sequences[] = {
        "\xC0\xAF",          // overlong '/'
        "\xE0\x80\xAF",      // overlong, three bytes
        "\xED\xA0\x80",      // UTF-16 surrogate U+D800
        "\xED\xBF\xBF",      // surrogate U+DFFF
        "\xF4\x90\x80\x80",  // above U+10FFFF
        "\xE2\x82",          // truncated sequence
        "\x80",              // lone continuation byte
        "\xFF",
    };
    for (const std::string& seq : bad_sequences) {
        INFO("sequence of " << seq.size() << " bytes");
        // In a value nobody reads, in a key, in the value we read, outside strings, and
        // where the line is broken anyway.
        requireBad(parser.parse(R"({"status":500,"msg":")" + seq + R"(","duration_ms":3})"), BadLineReason::InvalidUtf8);
        requireBad(parser.parse(R"({")" + seq + R"(":1,"status":500})"), BadLineReason::InvalidUtf8);
        requireBad(parser.parse(R"({"status":")" + seq + R"("})"), BadLineReason::InvalidUtf8);
        requireBad(parser.parse(R"({"status":500})" + seq), BadLineReason::InvalidUtf8);
        requireBad(parser.parse(R"({"msg":")" + seq), BadLineReason::InvalidUtf8);
        requireBad(parser.parse(seq), BadLineReason::InvalidUtf8);
    }
    // Valid multi-byte text everywhere is fine.
    const ParsedLine p =
        parser.parse("{\"msg\":\"h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80\",\"\xC3\xA9t\xC3\xA9\":1,\"status\":503}");
    REQUIRE(p.ok);
    CHECK(p.error);
    CHECK(std::string(toString(BadLineReason::InvalidUtf8)) == "invalid_utf8");
    // An escaped lone surrogate is valid UTF-8 on the wire; in a value we skip it is fine.
    CHECK(parser.parse(R"({"msg":"\ud800","status":200})").ok);
}
