#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "rollguard/rules/duration.h"

using namespace std::chrono_literals;
using rollguard::rules::formatDuration;
using rollguard::rules::formatSeconds;
using rollguard::rules::parseDuration;

TEST_CASE("parseDuration reads Go/Prometheus style durations", "[rules][duration]") {
    CHECK(parseDuration("500ms") == std::chrono::nanoseconds{500ms});
    CHECK(parseDuration("1.5s") == std::chrono::nanoseconds{1500ms});
    CHECK(parseDuration("1h30m") == std::chrono::nanoseconds{90min});
    CHECK(parseDuration("2m") == std::chrono::nanoseconds{120s});
    CHECK(parseDuration("250us") == std::chrono::nanoseconds{250us});
    CHECK(parseDuration("250\xC2\xB5s") == std::chrono::nanoseconds{250us});
    CHECK(parseDuration("0") == std::chrono::nanoseconds{0});
    CHECK(parseDuration("0s") == std::chrono::nanoseconds{0});
    CHECK(parseDuration("7ns") == std::chrono::nanoseconds{7});
    CHECK(parseDuration("1d") == std::chrono::nanoseconds{24h});
    CHECK(parseDuration("1.5ms") == std::chrono::nanoseconds{1'500'000});
    CHECK(parseDuration("0.1s") == std::chrono::nanoseconds{100ms});
    CHECK(parseDuration(".5s") == std::chrono::nanoseconds{500ms});
    CHECK(parseDuration("1h0m1.000000001s") == std::chrono::nanoseconds{1h} + 1s + std::chrono::nanoseconds{1});
    CHECK(parseDuration("2.5h") == std::chrono::nanoseconds{150min});
}

TEST_CASE("parseDuration rejects malformed, negative and overflowing input", "[rules][duration]") {
    for (const char* bad : {"", "5", "-1s", "5x", "1.5.2s", "s", ".s", " 1s", "1s ", "+1s", "1 s", "1S",
                            "1sm", "10000000000000h", "9223372036854775807ns1ns", "1e3s", "0x10s"}) {
        INFO("input: \"" << bad << "\"");
        CHECK_FALSE(parseDuration(bad).has_value());
    }
}

TEST_CASE("formatDuration renders exactly and round-trips", "[rules][duration]") {
    CHECK(formatDuration(90s) == "1m30s");
    CHECK(formatDuration(std::chrono::nanoseconds{1'500'000}) == "1.5ms");
    CHECK(formatDuration(0s) == "0s");
    CHECK(formatDuration(500ms) == "500ms");
    CHECK(formatDuration(1500ms) == "1.5s");
    CHECK(formatDuration(250us) == "250us");
    CHECK(formatDuration(std::chrono::nanoseconds{1}) == "1ns");
    CHECK(formatDuration(1h) == "1h");
    CHECK(formatDuration(90min) == "1h30m");
    CHECK(formatDuration(24h) == "1d");
    CHECK(formatDuration(1min + 500ms) == "1m0.5s");
    CHECK(formatDuration(5min) == "5m");
    CHECK(formatDuration(-2s) == "-2s");

    for (std::chrono::nanoseconds d :
         {std::chrono::nanoseconds{0}, std::chrono::nanoseconds{1}, std::chrono::nanoseconds{999},
          std::chrono::nanoseconds{1'234'567}, std::chrono::nanoseconds{500ms}, std::chrono::nanoseconds{90s},
          std::chrono::nanoseconds{1h + 1s + std::chrono::nanoseconds{1}}, std::chrono::nanoseconds{49h + 7min},
          std::chrono::nanoseconds{std::chrono::nanoseconds::max().count()}}) {
        INFO("duration ns: " << d.count() << " text: " << formatDuration(d));
        CHECK(parseDuration(formatDuration(d)) == d);
    }
}

TEST_CASE("formatSeconds picks a human unit", "[rules][duration]") {
    CHECK(formatSeconds(0.0123) == "12.3ms");
    CHECK(formatSeconds(2.5) == "2.5s");
    CHECK(formatSeconds(0.000045) == "45us");
    CHECK(formatSeconds(0.0) == "0s");
    CHECK(formatSeconds(0.5) == "500ms");
    CHECK(formatSeconds(3e-9) == "3ns");
    CHECK(formatSeconds(123.456) == "123s");
    CHECK(formatSeconds(1.0) == "1s");
    CHECK(formatSeconds(0.25) == "250ms");
    CHECK(formatSeconds(-0.002) == "-2ms");
}
