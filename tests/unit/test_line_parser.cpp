#include <catch2/catch.hpp>

#include <string>

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
