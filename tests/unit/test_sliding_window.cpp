#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "rollguard/agent/sliding_window.h"

using namespace std::chrono_literals;
using rollguard::agent::HdrHistogram;
using rollguard::agent::HistogramSettings;
using rollguard::agent::IntervalRecorder;
using rollguard::agent::IntervalStats;
using rollguard::agent::SlidingWindow;
using rollguard::agent::WindowStats;
using rollguard::rules::TimePoint;

namespace {

// A whole second, so slot i of a 1 s window starts exactly at t0 + i s.
const TimePoint t0{std::chrono::seconds{1'700'000'000}};

IntervalStats eventsOnly(std::int64_t events, std::int64_t errors = 0) {
    IntervalStats s;
    s.events = events;
    s.errors = errors;
    return s;
}

void requireSameCounts(const HdrHistogram& a, const HdrHistogram& b) {
    REQUIRE(a.totalCount() == b.totalCount());
    bool same = true;
    for (std::int32_t i = 0; i < a.countsLength(); ++i) {
        same = same && a.countAtIndex(i) == b.countAtIndex(i);
    }
    REQUIRE(same);
}

}  // namespace

TEST_CASE("window refuses a zero slot width or a retention below one slot", "[store][window]") {
    CHECK_THROWS_AS(SlidingWindow(0s, 10s), std::invalid_argument);
    CHECK_THROWS_AS(SlidingWindow(-1s, 10s), std::invalid_argument);
    CHECK_THROWS_AS(SlidingWindow(2s, 1s), std::invalid_argument);
    HistogramSettings bad;
    bad.sigfigs = 9;
    CHECK_THROWS_AS(SlidingWindow(1s, 10s, bad), std::invalid_argument);
    CHECK_NOTHROW(SlidingWindow(1s, 1s));
}

TEST_CASE("window expires slots older than the retention", "[store][window]") {
    SlidingWindow w(1s, 10s);
    for (int i = 0; i < 15; ++i) {
        w.add(t0 + std::chrono::seconds{i}, eventsOnly(i + 1));
    }
    // newest slot 14: slots <= 14 - 10 are gone, 5..14 remain.
    CHECK(w.slotCount() == 10);
    CHECK(w.query(t0 + 14s, 1h).events == 6 + 7 + 8 + 9 + 10 + 11 + 12 + 13 + 14 + 15);

    SECTION("a late interval within retention goes into its own slot") {
        w.add(t0 + 5s + 300ms, eventsOnly(100));
        CHECK(w.slotCount() == 10);
        CHECK(w.query(t0 + 5s, 1s).events == 106);
        CHECK(w.query(t0 + 14s, 1h).events == 105 + 100);
    }
    SECTION("a late interval beyond retention is dropped") {
        w.add(t0 + 4s + 999ms, eventsOnly(100));
        w.add(t0 - 1h, eventsOnly(100));
        CHECK(w.slotCount() == 10);
        CHECK(w.query(t0 + 14s, 1h).events == 105);
    }
    SECTION("a jump forward expires everything before it") {
        w.add(t0 + 100s, eventsOnly(1));
        CHECK(w.slotCount() == 1);
        CHECK(w.query(t0 + 100s, 1h).events == 1);
    }
    SECTION("a retention of one slot keeps only the newest slot") {
        SlidingWindow one(1s, 1s);
        one.add(t0, eventsOnly(1));
        one.add(t0 + 1s, eventsOnly(2));
        CHECK(one.slotCount() == 1);
        CHECK(one.query(t0 + 1s, 10s).events == 2);
    }
}

TEST_CASE("window fills gaps in slot order", "[store][window]") {
    SlidingWindow w(1s, 60s);
    w.add(t0 + 10s, eventsOnly(1));
    w.add(t0 + 30s, eventsOnly(2));
    w.add(t0 + 20s, eventsOnly(4));
    w.add(t0 + 20s + 500ms, eventsOnly(8));
    CHECK(w.slotCount() == 3);
    CHECK(w.query(t0 + 20s, 1s).events == 12);
    CHECK(w.query(t0 + 25s, 10s).events == 12);
    CHECK(w.query(t0 + 30s, 11s).events == 14);
    CHECK(w.query(t0 + 30s, 21s).events == 15);
}

TEST_CASE("window query includes exactly the slots from now - window (exclusive) to now (inclusive)", "[store][window]") {
    SlidingWindow w(1s, 1h);
    // Slot i carries 2^i events, so the sum names the slots that were included.
    for (int i = 0; i < 10; ++i) {
        w.add(t0 + std::chrono::seconds{i}, eventsOnly(std::int64_t{1} << i, i));
    }
    const auto mask = [](int from, int to) {
        std::int64_t m = 0;
        for (int i = from; i <= to; ++i) {
            m |= std::int64_t{1} << i;
        }
        return m;
    };

    WindowStats s = w.query(t0 + 9s, 3s);
    CHECK(s.events == mask(7, 9));
    CHECK(s.errors == 7 + 8 + 9);
    CHECK(s.covered == 3s);

    CHECK(w.query(t0 + 9s + 999ms, 3s).events == mask(7, 9));
    CHECK(w.query(t0 + 10s, 3s).events == mask(8, 9));
    CHECK(w.query(t0 + 8s + 999'999'999ns, 3s).events == mask(6, 8));

    SECTION("the window rounds up to whole slots") {
        WindowStats r = w.query(t0 + 9s, 2500ms);
        CHECK(r.events == mask(7, 9));
        CHECK(r.covered == 3s);
        WindowStats tiny = w.query(t0 + 9s, 1ns);
        CHECK(tiny.events == mask(9, 9));
        CHECK(tiny.covered == 1s);
        WindowStats exact = w.query(t0 + 9s, 2s);
        CHECK(exact.events == mask(8, 9));
        CHECK(exact.covered == 2s);
    }
    SECTION("slots after now are not included") {
        CHECK(w.query(t0 + 5s, 3s).events == mask(3, 5));
        CHECK(w.query(t0 - 1s, 1h).events == 0);
    }
    SECTION("an empty window covers nothing") {
        WindowStats z = w.query(t0 + 9s, 0s);
        CHECK(z.events == 0);
        CHECK(z.covered == 0s);
        CHECK(w.query(t0 + 9s, -5s).events == 0);
    }
    SECTION("a window larger than the history covers what was asked") {
        WindowStats all = w.query(t0 + 9s, 1h);
        CHECK(all.events == mask(0, 9));
        CHECK(all.covered == 1h);
    }
}

TEST_CASE("window merged from slots equals one histogram of the same data", "[store][window]") {
    std::mt19937_64 rng(424242);
    std::lognormal_distribution<double> latency(std::log(25'000.0), 1.0);
    std::uniform_int_distribution<int> per_slot(0, 400);
    HistogramSettings settings;
    SlidingWindow w(1s, 5min, settings);
    HdrHistogram everything(settings.lowest, settings.highest, settings.sigfigs);
    HdrHistogram last_ten(settings.lowest, settings.highest, settings.sigfigs);
    IntervalStats interval(settings);
    for (int slot = 0; slot < 60; ++slot) {
        interval.reset();
        const int n = per_slot(rng);
        for (int i = 0; i < n; ++i) {
            const auto v = std::llround(latency(rng));
            interval.latency.record(v);
            everything.record(v);
            if (slot >= 50) {
                last_ten.record(v);
            }
        }
        interval.events = n;
        // Two adds into the same slot exercise the sparse merge.
        IntervalStats again(settings);
        again.latency.add(interval.latency);
        w.add(t0 + std::chrono::seconds{slot}, interval);
        if (slot % 7 == 0) {
            w.add(t0 + std::chrono::seconds{slot} + 500ms, again);
            everything.add(again.latency);
            if (slot >= 50) {
                last_ten.add(again.latency);
            }
        }
    }
    const WindowStats all = w.query(t0 + 59s, 60s);
    requireSameCounts(all.latency, everything);
    const WindowStats ten = w.query(t0 + 59s, 10s);
    requireSameCounts(ten.latency, last_ten);
    for (double p : {0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 100.0}) {
        CHECK(all.latency.valueAtPercentile(p) == everything.valueAtPercentile(p));
        CHECK(ten.latency.valueAtPercentile(p) == last_ten.valueAtPercentile(p));
    }
    CHECK(all.latency.min() == everything.min());
    CHECK(all.latency.max() == everything.max());
    CHECK(all.latency.mean() == everything.mean());
}

TEST_CASE("window stats are a latency view in seconds", "[store][window]") {
    SlidingWindow w(1s, 1min);
    IntervalStats i;
    i.events = 5;
    i.errors = 2;
    for (std::int64_t us : {1000, 2000, 3000, 4000}) {
        i.latency.record(us);
    }
    w.add(t0 + 3s, i);
    const WindowStats s = w.query(t0 + 3s, 30s);
    CHECK(s.count() == 4);
    CHECK(s.quantileSeconds(0.5) == Approx(0.002));
    CHECK(s.quantileSeconds(1.0) == Approx(s.latency.highestEquivalentValue(4000) / 1e6));
    CHECK(s.minSeconds() == Approx(0.001));
    CHECK(s.maxSeconds() == Approx(s.latency.highestEquivalentValue(4000) / 1e6));
    CHECK(s.meanSeconds() == Approx(s.latency.mean() / 1e6));
    const rollguard::rules::SeriesStats series = s.asSeriesStats();
    CHECK(series.events == 5);
    CHECK(series.errors == 2);
    CHECK(series.window == 30s);
    CHECK(series.latency == &s);

    SECTION("a millisecond store converts with its own unit") {
        HistogramSettings ms;
        ms.highest = 3'600'000;
        ms.units_per_second = 1e3;
        WindowStats m(ms);
        m.latency.record(250);
        CHECK(m.quantileSeconds(0.99) == Approx(0.25));
        CHECK(m.maxSeconds() == Approx(0.25));
    }
    SECTION("no samples still gives a view with count 0") {
        const WindowStats empty = w.query(t0 + 50s, 10s);
        CHECK(empty.count() == 0);
        CHECK(empty.asSeriesStats().latency == &empty);
        CHECK(empty.asSeriesStats().events == 0);
    }
}

TEST_CASE("window memory follows the data: 1 h of 1 s slots at 1000 values/s", "[store][window]") {
    std::mt19937_64 rng(77);
    // Web-like latencies: median 20 ms, p99 around 130 ms.
    std::lognormal_distribution<double> latency(std::log(20'000.0), 0.8);
    HistogramSettings settings;
    SlidingWindow w(1s, 1h, settings);
    IntervalStats interval(settings);
    std::size_t non_zero_total = 0;
    for (int slot = 0; slot < 3600; ++slot) {
        interval.reset();
        for (int i = 0; i < 1000; ++i) {
            interval.latency.record(std::llround(latency(rng)));
        }
        interval.events = 1000;
        interval.latency.forEachNonZero([&non_zero_total](std::int32_t, std::int64_t) { ++non_zero_total; });
        w.add(t0 + std::chrono::seconds{slot}, interval);
    }
    REQUIRE(w.slotCount() == 3600);
    const std::size_t bytes = w.memoryBytes();
    const std::size_t dense = 3600 * HdrHistogram(settings.lowest, settings.highest, settings.sigfigs).memoryBytes();
    WARN("3600 slots x 1000 values: " << bytes << " bytes (" << non_zero_total << " non-zero slots; "
                                      << "dense histograms would take " << dense << " bytes)");
    const std::size_t pairs = non_zero_total * sizeof(std::pair<std::int32_t, std::int64_t>);
    CHECK(bytes >= pairs);
    CHECK(bytes <= pairs + 3600 * 128 + 1024);  // exact capacities plus small per-slot bookkeeping
    CHECK(bytes < dense / 10);
    CHECK(w.query(t0 + 3599s, 1h).latency.totalCount() == 3'600'000);
}

TEST_CASE("recorder converts seconds to units rounding to nearest", "[store][recorder]") {
    IntervalRecorder r;
    CHECK(r.toUnits(0.0015) == 1500);
    CHECK(r.toUnits(0.0000004) == 0);
    CHECK(r.toUnits(0.0000006) == 1);
    CHECK(r.toUnits(0.0) == 0);
    CHECK(r.toUnits(-0.0) == 0);
    CHECK(r.toUnits(-0.001) == -1);
    CHECK(r.toUnits(std::nan("")) == -1);
    CHECK(r.toUnits(std::numeric_limits<double>::infinity()) == std::numeric_limits<std::int64_t>::max());
    CHECK(r.toUnits(1e300) == std::numeric_limits<std::int64_t>::max());
    for (std::int64_t us = 0; us < 100'000; us += 37) {
        REQUIRE(r.toUnits(static_cast<double>(us) / 1e6) == us);
    }
}

TEST_CASE("recorder counts events, errors and latencies and take() starts afresh", "[store][recorder]") {
    IntervalRecorder r;
    r.record(0.010, false);
    r.record(0.020, true);
    r.record(-1.0, true);   // an event without a latency
    r.record(7200.0, false);  // beyond 1 h: clamped and counted as overflow
    IntervalStats first = r.take();
    CHECK(first.events == 4);
    CHECK(first.errors == 2);
    CHECK(first.latency.totalCount() == 3);
    CHECK(first.latency.overflowCount() == 1);
    CHECK(first.latency.min() == 10'000);
    CHECK(first.latency.valueAtPercentile(50) == first.latency.highestEquivalentValue(20'000));

    IntervalStats second = r.take();
    CHECK(second.events == 0);
    CHECK(second.errors == 0);
    CHECK(second.latency.totalCount() == 0);

    IntervalStats batch(r.settings());
    batch.events = 10;
    batch.errors = 3;
    batch.latency.record(500, 10);
    r.recordBatch(batch);
    r.record(0.0005, false);
    IntervalStats third = r.take();
    CHECK(third.events == 11);
    CHECK(third.errors == 3);
    CHECK(third.latency.countAtIndex(third.latency.countsIndexFor(500)) == 11);

    HistogramSettings other;
    other.sigfigs = 2;
    CHECK_THROWS_AS(r.recordBatch(IntervalStats(other)), std::invalid_argument);
}

TEST_CASE("recorder loses nothing with concurrent writers and a taker", "[store][recorder]") {
    constexpr int kWriters = 4;
    constexpr int kPerWriter = 40'000;
    IntervalRecorder r;
    const auto value_us = [](int writer, int i) { return static_cast<std::int64_t>((i * 7919 + writer * 131) % 250'000); };

    std::atomic<int> writers_done{0};
    IntervalStats taken(r.settings());
    int takes = 0;
    std::thread taker([&] {
        while (writers_done.load() < kWriters) {
            IntervalStats part = r.take();
            taken.events += part.events;
            taken.errors += part.errors;
            taken.latency.add(part.latency);
            ++takes;
            std::this_thread::yield();
        }
    });
    std::vector<std::thread> writers;
    for (int wr = 0; wr < kWriters; ++wr) {
        writers.emplace_back([&r, &writers_done, &value_us, wr] {
            for (int i = 0; i < kPerWriter; ++i) {
                if (i % 5 == 0) {
                    r.record(-1.0, i % 10 == 0);  // no latency
                } else {
                    r.record(static_cast<double>(value_us(wr, i)) / 1e6, i % 10 == 1);
                }
            }
            writers_done.fetch_add(1);
        });
    }
    for (auto& t : writers) {
        t.join();
    }
    taker.join();
    IntervalStats rest = r.take();
    taken.events += rest.events;
    taken.errors += rest.errors;
    taken.latency.add(rest.latency);

    HdrHistogram expected(1, 3'600'000'000, 3);
    for (int wr = 0; wr < kWriters; ++wr) {
        for (int i = 0; i < kPerWriter; ++i) {
            if (i % 5 != 0) {
                expected.record(value_us(wr, i));
            }
        }
    }
    CHECK(takes >= 1);
    CHECK(taken.events == kWriters * kPerWriter);
    CHECK(taken.errors == kWriters * kPerWriter / 5);
    requireSameCounts(taken.latency, expected);
}
