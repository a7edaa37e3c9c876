#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "rollguard/agent/sliding_window.h"

using namespace std::chrono_literals;
using rollguard::agent::HdrHistogram;
using rollguard::agent::HistogramSettings;
using rollguard::agent::IntervalRecorder;
using rollguard::agent::IntervalStats;
using rollguard::agent::Series;
using rollguard::agent::SparseCounts;
using rollguard::agent::WindowHandle;
using rollguard::agent::WindowView;
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

TEST_CASE("slot widths keep a window within 100 slots", "[store][window]") {
    CHECK(Series::slotWidthFor(2s) == 100ms);
    CHECK(Series::slotWidthFor(10s) == 100ms);
    CHECK(Series::slotWidthFor(11s) == 200ms);
    CHECK(Series::slotWidthFor(30s) == 500ms);
    CHECK(Series::slotWidthFor(1min) == 1s);
    CHECK(Series::slotWidthFor(5min) == 5s);
    CHECK(Series::slotWidthFor(5min + 1s) == 5s);
    CHECK(Series::slotWidthFor(10min) == 10s);
    CHECK(Series::slotWidthFor(1h) == 1min);
    CHECK(Series::slotWidthFor(6h) == 5min);
    CHECK(Series::slotWidthFor(48h) == 30min);
    CHECK(Series::slotWidthFor(1000h) == 10h);
    for (auto w : {1s, 7s, 59s, 300s, 3599s, 86400s}) {
        const auto width = Series::slotWidthFor(w);
        CHECK((w.count() * 1'000'000'000LL + width.count() - 1) / width.count() <= 100);
    }
}

TEST_CASE("series refuses bad settings and windows", "[store][window]") {
    HistogramSettings bad;
    bad.sigfigs = 9;
    CHECK_THROWS_AS(Series(bad), std::invalid_argument);
    Series series;
    CHECK_THROWS_AS(series.addWindow(0s), std::invalid_argument);
    CHECK_THROWS_AS(series.addWindow(-1s), std::invalid_argument);
    HistogramSettings ms;
    ms.highest = 3'600'000;
    IntervalStats foreign(ms);
    foreign.events = 1;
    CHECK_THROWS_AS(series.add(t0, foreign), std::invalid_argument);
}

TEST_CASE("windows of equal length share one aggregate", "[store][window]") {
    Series series;
    const WindowHandle a = series.addWindow(5min);
    const WindowHandle b = series.addWindow(1min);
    CHECK(series.addWindow(5min) == a);
    CHECK(a != b);
}

TEST_CASE("values leave a window exactly when their slot falls out of it", "[store][window]") {
    Series series;
    const WindowHandle w5 = series.addWindow(5min);  // 60 slots of 5 s
    const WindowHandle w1 = series.addWindow(1min);  // 60 slots of 1 s
    series.add(t0 + 500ms, eventsOnly(7, 3));
    CHECK(series.window(w5).events() == 7);
    CHECK(series.window(w1).errors() == 3);

    // The slot [t0, t0+5s) is in the 5-minute window until t0 + 300 s.
    series.advance(t0 + 299s + 999ms);
    CHECK(series.window(w5).events() == 7);
    CHECK(series.window(w1).events() == 0);
    series.advance(t0 + 300s);
    CHECK(series.window(w5).events() == 0);
    CHECK(series.window(w5).errors() == 0);

    SECTION("the 10-second window drops the 100 ms slot [t0+500ms, t0+600ms) at t0+10.5s") {
        Series s2;
        const WindowHandle w = s2.addWindow(10s);
        s2.add(t0 + 500ms, eventsOnly(1));
        s2.advance(t0 + 10s + 499ms);
        CHECK(s2.window(w).events() == 1);
        s2.advance(t0 + 10s + 500ms);
        CHECK(s2.window(w).events() == 0);
    }
}

TEST_CASE("a gap longer than the window empties it", "[store][window]") {
    Series series;
    const WindowHandle w = series.addWindow(10s);
    IntervalStats i;
    i.events = 3;
    i.latency.record(1500);
    i.latency.record(2500);
    i.latency.record(900'000);
    for (int k = 0; k < 50; ++k) {
        series.add(t0 + std::chrono::milliseconds{k * 100}, i);
    }
    CHECK(series.window(w).events() == 150);
    CHECK(series.window(w).count() == 150);
    series.advance(t0 + 1h);
    CHECK(series.window(w).events() == 0);
    CHECK(series.window(w).count() == 0);
    CHECK(series.window(w).latency().max() == 0);
    CHECK(series.sealedSlots() == 0);
    // And it fills again afterwards.
    series.add(t0 + 1h + 1s, i);
    CHECK(series.window(w).count() == 3);
}

TEST_CASE("time running backwards is clamped to the newest slot", "[store][window]") {
    Series series;
    const WindowHandle w = series.addWindow(10s);  // 100 ms slots
    series.add(t0 + 20s, eventsOnly(1));
    series.add(t0 + 5s, eventsOnly(2));  // a late interval: counted as of t0 + 20 s
    CHECK(series.window(w).events() == 3);
    series.advance(t0 + 1s);  // a clock step back changes nothing
    CHECK(series.window(w).events() == 3);
    series.advance(t0 + 29s + 999ms);
    CHECK(series.window(w).events() == 3);
    series.advance(t0 + 30s);
    CHECK(series.window(w).events() == 0);
}

TEST_CASE("a window added after data starts with what its ring holds", "[store][window]") {
    Series series;
    const WindowHandle w5 = series.addWindow(5min);
    for (int k = 0; k < 100; ++k) {
        series.add(t0 + std::chrono::seconds{k}, eventsOnly(1));
    }
    const WindowHandle w2 = series.addWindow(2min);  // same 5 s ring? No: 2 s slots, a new ring
    CHECK(series.window(w2).events() == 0);
    const WindowHandle w4 = series.addWindow(4min + 30s);  // 54 slots of 5 s: backfilled
    CHECK(series.window(w4).events() == 100);
    series.advance(t0 + 300s);
    CHECK(series.window(w5).events() == 95);  // the slot [t0, t0 + 5 s) has left
    CHECK(series.window(w4).events() == 100 - 35);  // slots up to [t0 + 30 s, t0 + 35 s) have left
    CHECK(series.window(w2).events() == 0);
}

TEST_CASE("the incremental aggregate equals a from-scratch merge after thousands of random steps",
          "[store][window]") {
    std::mt19937_64 rng(20261123);
    Series series;
    const std::vector<std::chrono::nanoseconds> lengths{2s, 10s, 1min, 5min, 7min};
    std::vector<WindowHandle> handles;
    for (auto l : lengths) {
        handles.push_back(series.addWindow(l));
    }

    struct Fed {
        rollguard::rules::TimePoint at;  // effective (clamped) time
        IntervalStats stats;
    };
    std::vector<Fed> fed;
    rollguard::rules::TimePoint now = t0;
    rollguard::rules::TimePoint newest = t0;
    std::uniform_int_distribution<int> step_ms(0, 1500);
    std::uniform_int_distribution<int> coin(0, 99);
    std::lognormal_distribution<double> latency(std::log(20'000.0), 1.0);

    for (int step = 0; step < 3000; ++step) {
        const int c = coin(rng);
        if (c < 3) {
            now -= std::chrono::milliseconds{step_ms(rng)};  // clock step back
        } else if (c < 5) {
            now += std::chrono::seconds{30 + coin(rng) * 5};  // a gap
        } else {
            now += std::chrono::milliseconds{step_ms(rng)};
        }
        newest = std::max(newest, now);
        if (coin(rng) < 20) {
            series.advance(now);
            continue;
        }
        IntervalStats i;
        i.events = coin(rng) % 40;
        i.errors = i.events / 3;
        i.value_count = coin(rng) % 3;
        i.value_sum = static_cast<double>(i.value_count) * 1.5;
        for (std::int64_t k = 0; k < i.events; ++k) {
            i.latency.record(std::llround(latency(rng)));
        }
        if (coin(rng) < 2) {
            i.latency.record(std::int64_t{1} << 40);  // beyond 1 h: clamped and counted
        }
        series.add(now, i);
        fed.push_back(Fed{newest, std::move(i)});

        if (step % 97 != 0 && step != 2999) {
            continue;
        }
        for (std::size_t wi = 0; wi < lengths.size(); ++wi) {
            const auto width = Series::slotWidthFor(lengths[wi]).count();
            const std::int64_t n = (lengths[wi].count() + width - 1) / width;
            const std::int64_t open = newest.time_since_epoch().count() / width;
            IntervalStats expected;
            for (const auto& f : fed) {
                if (f.at.time_since_epoch().count() / width > open - n) {
                    expected.events += f.stats.events;
                    expected.errors += f.stats.errors;
                    expected.value_sum += f.stats.value_sum;
                    expected.value_count += f.stats.value_count;
                    expected.latency.add(f.stats.latency);
                }
            }
            const WindowView& v = series.window(handles[wi]);
            INFO("step " << step << " window " << lengths[wi].count() / 1'000'000 << " ms");
            REQUIRE(v.events() == expected.events);
            REQUIRE(v.errors() == expected.errors);
            REQUIRE(v.valueCount() == expected.value_count);
            REQUIRE(v.valueSum() == Approx(expected.value_sum).margin(1e-9));
            REQUIRE(v.latency().overflowCount() == expected.latency.overflowCount());
            REQUIRE(v.latency().min() == expected.latency.min());
            REQUIRE(v.latency().max() == expected.latency.max());
            requireSameCounts(v.latency(), expected.latency);
        }
    }
}

TEST_CASE("a window is a latency view in seconds and reports the span it covers", "[store][window]") {
    Series series;
    const WindowHandle h = series.addWindow(30s);
    IntervalStats i;
    i.events = 5;
    i.errors = 2;
    for (std::int64_t us : {1000, 2000, 3000, 4000}) {
        i.latency.record(us);
    }
    series.add(t0 + 3s, i);
    const WindowView& v = series.window(h);
    CHECK(v.count() == 4);
    CHECK(v.quantileSeconds(0.5) == Approx(0.002));
    CHECK(v.quantileSeconds(1.0) == Approx(v.latency().highestEquivalentValue(4000) / 1e6));
    CHECK(v.minSeconds() == Approx(0.001));
    CHECK(v.maxSeconds() == Approx(v.latency().highestEquivalentValue(4000) / 1e6));
    CHECK(v.meanSeconds() == Approx(v.latency().mean() / 1e6));
    rollguard::rules::SeriesStats stats = v.asSeriesStats();
    CHECK(stats.events == 5);
    CHECK(stats.errors == 2);
    CHECK(stats.window == 0s);  // the series is brand new
    CHECK(stats.latency == &v);

    series.advance(t0 + 13s);
    CHECK(v.asSeriesStats().window == 10s);  // younger than the window: since first data
    series.advance(t0 + 103s + 50ms);
    // 60 slots of 500 ms: the open slot began at +103.0 s, the window at +73.5 s.
    CHECK(v.asSeriesStats().window == 29s + 550ms);
    CHECK(v.count() == 0);

    SECTION("a millisecond store converts with its own unit") {
        HistogramSettings ms;
        ms.highest = 3'600'000;
        ms.units_per_second = 1e3;
        Series m(ms);
        const WindowHandle mh = m.addWindow(1min);
        IntervalStats mi(ms);
        mi.latency.record(250);
        m.add(t0, mi);
        CHECK(m.window(mh).quantileSeconds(0.99) == Approx(0.25));
        CHECK(m.window(mh).maxSeconds() == Approx(0.25));
    }
}

TEST_CASE("with a stamp span, a window covers what its stamps stand for: W when full", "[store][window][rate]") {
    // Stamps every 250 ms at a phase that is no slot boundary, into 100 ms slots (a 10 s
    // window), 10 events each: the rate, events over what they stand for, is 40/s from
    // the first stamp on, whether the data arrive (add) or carry their event time (addAt).
    // Slots coarser than the stamps' span (500 ms, a 30 s window) give a window between
    // W - slot + span and W of stamps, and the rate stays exact.
    for (const auto length : {10s, 30s})
    for (const bool event_time : {false, true}) {
        INFO((event_time ? "event time" : "arrival") << ", window " << length.count() << " s");
        Series series({}, 250ms);
        const WindowHandle h = series.addWindow(length);
        const auto slot = Series::slotWidthFor(length);
        const WindowView& v = series.window(h);
        const TimePoint start = t0 + 37ms;
        for (int k = 0; k < 400; ++k) {
            const TimePoint at = start + k * 250ms;
            if (event_time) {
                series.addAt(at, eventsOnly(10));
            } else {
                // Arrivals: the first stamp is the start, when nothing has arrived yet.
                series.add(at, eventsOnly(k == 0 ? 0 : 10));
            }
            const auto stats = v.asSeriesStats();
            INFO("stamp " << k);
            if (!event_time && k == 0) {
                // The start stands for no time yet.
                CHECK(stats.window == 0s);
                continue;
            }
            const double seconds = std::chrono::duration<double>(stats.window).count();
            REQUIRE(seconds > 0.0);
            CHECK(static_cast<double>(stats.events) / seconds == Approx(40.0).epsilon(1e-12));
            if (k >= 4 * length.count() + 10) {
                if (slot <= 250ms) {
                    CHECK(stats.window == length);
                } else {
                    CHECK(stats.window <= length);
                    CHECK(stats.window >= length - slot + 250ms);
                }
            }
        }
    }
}

TEST_CASE("a window's quantiles follow every change of its aggregate", "[store][window]") {
    // Quantiles are kept between evaluations while the window does not change: every way
    // the window changes must show in the next answer.
    const auto latencies = [](std::int64_t us, int n) {
        IntervalStats s;
        s.events = n;
        for (int i = 0; i < n; ++i) {
            s.latency.record(us);
        }
        return s;
    };
    Series series;
    const WindowHandle h = series.addWindow(10s);  // 100 ms slots
    const WindowView& v = series.window(h);
    series.add(t0, latencies(1000, 10));
    CHECK(v.quantileSeconds(0.99) == Approx(0.001).epsilon(0.001));
    CHECK(v.quantileSeconds(0.99) == Approx(0.001).epsilon(0.001));  // kept
    series.add(t0 + 1s, latencies(50'000, 10));  // add
    CHECK(v.quantileSeconds(0.99) == Approx(0.05).epsilon(0.001));
    CHECK(v.quantileSeconds(0.25) == Approx(0.001).epsilon(0.001));
    series.advance(t0 + 10s + 500ms);  // the first slot leaves
    CHECK(v.quantileSeconds(0.25) == Approx(0.05).epsilon(0.001));
    series.addAt(t0 + 5s, latencies(2000, 100));  // late data into a sealed slot
    CHECK(v.quantileSeconds(0.25) == Approx(0.002).epsilon(0.001));
    CHECK(v.quantileSeconds(0.99) == Approx(0.05).epsilon(0.001));
    series.advance(t0 + 30s);  // everything leaves
    CHECK(v.quantileSeconds(0.99) == 0.0);
    CHECK(v.quantileSeconds(0.25) == 0.0);
}

TEST_CASE("sparse counts round-trip a histogram", "[store][window]") {
    HdrHistogram h(1, 3'600'000'000, 3);
    std::mt19937_64 rng(5);
    std::lognormal_distribution<double> latency(std::log(20'000.0), 0.8);
    for (int i = 0; i < 1000; ++i) {
        h.record(std::llround(latency(rng)));
    }
    h.record(3'600'000'000, 70'000);  // a big count in the top slot
    const SparseCounts sparse(h);
    HdrHistogram rebuilt(1, 3'600'000'000, 3);
    std::size_t n = 0;
    sparse.forEach([&](std::int32_t index, std::int64_t count) {
        rebuilt.addAtIndex(index, count);
        ++n;
    });
    CHECK(n == sparse.entries());
    requireSameCounts(h, rebuilt);
    CHECK(sparse.byteSize() < 4 * sparse.entries());
    CHECK(SparseCounts(HdrHistogram(1, 1000, 2)).entries() == 0);
}

namespace {

// SparseCounts' format written out from a scan of every count: what the bytes must be,
// however the histogram keeps track of what it holds.
std::string encodeByFullScan(const HdrHistogram& h) {
    std::string out;
    const auto put = [&out](std::uint64_t v) {
        while (v >= 0x80) {
            out.push_back(static_cast<char>(static_cast<std::uint8_t>(v | 0x80)));
            v >>= 7;
        }
        out.push_back(static_cast<char>(static_cast<std::uint8_t>(v)));
    };
    std::int64_t previous = -1;
    for (std::int32_t i = 0; i < h.countsLength(); ++i) {
        if (h.countAtIndex(i) != 0) {
            put(static_cast<std::uint64_t>(i - previous));
            put(static_cast<std::uint64_t>(h.countAtIndex(i)));
            previous = i;
        }
    }
    return out;
}

}  // namespace

// A ring's open slot is one histogram filled, sealed and reset again tick after tick, so
// anything its reset leaves behind would show up in a later slot's bytes.
TEST_CASE("a reused slot histogram seals to the bytes of its data and resets to empty", "[store][window]") {
    constexpr std::int64_t kHighest = 3'600'000'000;
    HdrHistogram open(1, kHighest, 3);
    HdrHistogram interval(1, kHighest, 3);
    HdrHistogram slot(1, kHighest, 3);  // filled only by merges, as a ring's open slot
    const HdrHistogram fresh(1, kHighest, 3);
    std::mt19937_64 rng(21);
    std::lognormal_distribution<double> web(std::log(20'000.0), 0.8);
    std::uniform_int_distribution<std::int64_t> anywhere(0, 2 * kHighest);
    std::uniform_int_distribution<int> pick(0, 99);
    for (int trial = 0; trial < 400; ++trial) {
        std::vector<std::int64_t> expected(static_cast<std::size_t>(open.countsLength()), 0);
        std::int64_t expected_overflow = 0;
        const auto recordBoth = [&](HdrHistogram& h, std::int64_t v, std::int64_t count) {
            REQUIRE(h.record(v, count));
            expected[static_cast<std::size_t>(h.countsIndexFor(std::min(v, kHighest)))] += count;
            if (v > kHighest) {
                expected_overflow += count;
            }
        };
        const int values = pick(rng) < 10 ? 0 : pick(rng) * 20;
        for (int i = 0; i < values; ++i) {
            const int kind = pick(rng);
            const std::int64_t v = kind < 80 ? std::llround(web(rng)) : kind < 95 ? anywhere(rng) : 0;
            recordBoth(open, v, kind % 7 == 0 ? 1 + kind % 5 : 1);
        }
        if (pick(rng) < 50) {
            // Data merged in from an interval, as a tick does.
            interval.reset();
            const int more = pick(rng) * 5;
            for (int i = 0; i < more; ++i) {
                recordBoth(interval, std::llround(web(rng) * 3), 1);
            }
            if (pick(rng) < 50) {
                interval.indexNonZero();
            }
            open.add(interval);
        }
        if (pick(rng) < 60) {
            open.indexNonZero();
        }
        if (pick(rng) < 30) {
            // Some counts taken out again, emptying slots at either end and inside.
            std::vector<std::int32_t> held;
            for (std::int32_t i = 0; i < open.countsLength(); ++i) {
                if (expected[static_cast<std::size_t>(i)] != 0) {
                    held.push_back(i);
                }
            }
            for (std::size_t k = 0; k < held.size(); k += 1 + static_cast<std::size_t>(pick(rng) % 4)) {
                const std::int32_t i = k % 3 == 0 ? held[k] : k % 3 == 1 ? held.front() : held.back();
                auto& e = expected[static_cast<std::size_t>(i)];
                if (e == 0) {
                    continue;
                }
                const std::int64_t take = pick(rng) < 70 ? e : 1;
                REQUIRE(open.subtractAtIndex(i, take));
                e -= take;
            }
        }
        if (pick(rng) < 20) {
            // A contained histogram subtracted whole: every other held count, halved.
            HdrHistogram part(1, kHighest, 3);
            bool odd = false;
            for (std::int32_t i = 0; i < open.countsLength(); ++i) {
                auto& e = expected[static_cast<std::size_t>(i)];
                if (e != 0 && (odd = !odd)) {
                    const std::int64_t take = (e + 1) / 2;
                    part.addAtIndex(i, take);
                    e -= take;
                }
            }
            open.subtract(part);
        }

        HdrHistogram scratch(1, kHighest, 3);
        std::int64_t total = 0;
        int wrong_counts = 0;
        for (std::int32_t i = 0; i < open.countsLength(); ++i) {
            const std::int64_t e = expected[static_cast<std::size_t>(i)];
            wrong_counts += open.countAtIndex(i) != e ? 1 : 0;
            scratch.addAtIndex(i, e);
            total += e;
        }
        REQUIRE(wrong_counts == 0);
        REQUIRE(open.totalCount() == total);
        REQUIRE(open.min() == scratch.min());
        REQUIRE(open.max() == scratch.max());
        const SparseCounts sealed(open);
        REQUIRE(std::string(sealed.raw()) == encodeByFullScan(open));
        REQUIRE(sealed.raw() == SparseCounts(scratch).raw());
        REQUIRE(open.overflowCount() == expected_overflow);
        slot.add(open);
        REQUIRE(SparseCounts(slot).raw() == sealed.raw());
        REQUIRE(slot.min() == scratch.min());
        REQUIRE(slot.max() == scratch.max());
        slot.reset();
        REQUIRE(slot.totalCount() == 0);
        REQUIRE(SparseCounts(slot).entries() == 0);

        open.reset();
        REQUIRE(open.totalCount() == 0);
        REQUIRE(open.overflowCount() == 0);
        REQUIRE(open.min() == fresh.min());
        REQUIRE(open.max() == fresh.max());
        REQUIRE(SparseCounts(open).entries() == 0);
        int left = 0;
        for (std::int32_t i = 0; i < open.countsLength(); ++i) {
            left += open.countAtIndex(i) != 0 ? 1 : 0;
        }
        for (std::int32_t i = 0; i < slot.countsLength(); ++i) {
            left += slot.countAtIndex(i) != 0 ? 1 : 0;
        }
        REQUIRE(left == 0);
    }
}

TEST_CASE("a series with a 5-minute and a 1-hour window holds an hour at 1000/s in under 4 MB",
          "[store][window]") {
    std::mt19937_64 rng(77);
    // Web-like latencies: median 20 ms, p99 around 130 ms.
    std::lognormal_distribution<double> latency(std::log(20'000.0), 0.8);
    Series series;
    const WindowHandle w5 = series.addWindow(5min);
    const WindowHandle w60 = series.addWindow(1h);
    IntervalStats interval;
    for (int second = 0; second < 3600; ++second) {
        interval.reset();
        for (int i = 0; i < 1000; ++i) {
            interval.latency.record(std::llround(latency(rng)));
        }
        interval.events = 1000;
        series.add(t0 + std::chrono::seconds{second}, interval);
    }
    const std::size_t bytes = series.memoryBytes();
    const std::size_t naive = 3600 * HdrHistogram(1, 3'600'000'000, 3).memoryBytes();
    WARN("series with 5m + 1h windows after 1 h at 1000/s: " << bytes << " bytes; one dense histogram per 1 s slot "
                                                              << "would take " << naive << " bytes");
    CHECK(bytes < 4 * 1024 * 1024);
    CHECK(series.window(w5).events() == 300'000);
    // 60 slots of 1 min: the hour window holds between 59 min and 1 h of data.
    CHECK(series.window(w60).events() >= 3'540'000);
    CHECK(series.window(w60).events() <= 3'600'000);
    CHECK(series.window(w60).count() == series.window(w60).events());
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

TEST_CASE("recycled intervals start new keyed parts empty", "[store][recorder]") {
    IntervalRecorder r;
    const auto parts = [&r](std::int64_t bucket_ns, std::int64_t base) {
        rollguard::agent::KeyedBatch keyed;
        for (std::int64_t i = 0; i < 100; ++i) {
            keyed.add(0, bucket_ns, base + i * 37, i % 10 == 0);
        }
        r.recordBatch(IntervalStats(r.settings()), keyed, rollguard::agent::SourcePositions{});
        return r.takeParts();
    };
    std::vector<IntervalStats> spent;
    for (std::int64_t tick = 0; tick < 20; ++tick) {
        const std::int64_t base = 1'000 + tick * 50'000;
        std::vector<rollguard::agent::RecordedPart> taken = parts(tick * 1'000'000'000, base);
        REQUIRE(taken.size() == 1);
        const IntervalStats& got = taken[0].stats;
        HdrHistogram want(1, 3'600'000'000, 3);
        for (std::int64_t i = 0; i < 100; ++i) {
            want.record(base + i * 37);
        }
        CHECK(got.events == 100);
        CHECK(got.errors == 10);
        REQUIRE(got.latency.totalCount() == 100);
        CHECK(SparseCounts(got.latency).raw() == SparseCounts(want).raw());
        spent.push_back(std::move(taken[0].stats));
        r.recycle(spent);
        CHECK(spent.empty());
    }
    // Intervals of other settings are dropped, not reused.
    HistogramSettings other;
    other.sigfigs = 2;
    spent.emplace_back(other);
    spent.back().latency.record(5);
    r.recycle(spent);
    CHECK(parts(0, 10)[0].stats.latency.sameConfiguration(HdrHistogram(1, 3'600'000'000, 3)));
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

namespace {

void feedRandom(Series& series, std::mt19937_64& rng, rollguard::rules::TimePoint from, int steps) {
    std::lognormal_distribution<double> latency(std::log(20'000.0), 1.0);
    std::uniform_int_distribution<int> n(0, 30);
    for (int k = 0; k < steps; ++k) {
        IntervalStats i;
        i.events = n(rng);
        i.errors = i.events / 4;
        i.value_count = 1;
        i.value_sum = 0.25 * static_cast<double>(k);
        for (std::int64_t e = 0; e < i.events; ++e) {
            i.latency.record(std::llround(latency(rng)));
        }
        series.add(from + std::chrono::milliseconds{k * 250}, i);
    }
}

void requireSameWindow(const WindowView& a, const WindowView& b) {
    REQUIRE(a.events() == b.events());
    REQUIRE(a.errors() == b.errors());
    REQUIRE(a.valueCount() == b.valueCount());
    REQUIRE(a.valueSum() == Approx(b.valueSum()));
    REQUIRE(a.latency().min() == b.latency().min());
    REQUIRE(a.latency().max() == b.latency().max());
    requireSameCounts(a.latency(), b.latency());
}

}  // namespace

TEST_CASE("a series restored from its bytes continues exactly as the original", "[store][window][checkpoint]") {
    std::mt19937_64 rng(99);
    Series original;
    const std::vector<std::chrono::nanoseconds> lengths{10s, 5min, 1h};
    for (auto l : lengths) {
        original.addWindow(l);
    }
    feedRandom(original, rng, t0, 2000);
    const std::string bytes = original.serialize();

    Series restored;
    for (auto l : lengths) {
        restored.addWindow(l);
    }
    REQUIRE(restored.restore(bytes));
    for (WindowHandle h = 0; h < lengths.size(); ++h) {
        requireSameWindow(original.window(h), restored.window(h));
    }
    CHECK(restored.serialize() == bytes);

    // The same future for both: still identical.
    std::mt19937_64 rng_a(7);
    std::mt19937_64 rng_b(7);
    feedRandom(original, rng_a, t0 + 500s, 1500);
    feedRandom(restored, rng_b, t0 + 500s, 1500);
    for (WindowHandle h = 0; h < lengths.size(); ++h) {
        requireSameWindow(original.window(h), restored.window(h));
    }
}

TEST_CASE("a restored series with other windows keeps the slots it can use", "[store][window][checkpoint]") {
    std::mt19937_64 rng(3);
    Series original;
    original.addWindow(10s);  // 100 ms slots
    original.addWindow(5min);  // 5 s slots
    feedRandom(original, rng, t0, 400);

    Series other;
    const WindowHandle w20 = other.addWindow(8s);  // 100 ms slots: restored
    const WindowHandle w2m = other.addWindow(2min);  // 2 s slots: nothing saved, starts empty
    const WindowHandle w4m = other.addWindow(4min);  // 5 s slots: restored
    REQUIRE(other.restore(original.serialize()));
    CHECK(other.window(w20).events() > 0);
    CHECK(other.window(w2m).events() == 0);
    CHECK(other.window(w4m).events() == original.window(1).events());  // all 100 s of data fit in both
}

TEST_CASE("restore refuses other settings and corrupt bytes, changing nothing", "[store][window][checkpoint]") {
    std::mt19937_64 rng(4);
    Series original;
    original.addWindow(10s);
    feedRandom(original, rng, t0, 100);
    const std::string bytes = original.serialize();

    Series target;
    const WindowHandle w = target.addWindow(10s);
    target.add(t0, eventsOnly(5));
    for (std::size_t cut : {std::size_t{0}, std::size_t{1}, bytes.size() / 2, bytes.size() - 1}) {
        CHECK_FALSE(target.restore(std::string_view(bytes).substr(0, cut)));
    }
    std::string flipped = bytes;
    flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x5A);
    (void)target.restore(flipped);  // may or may not decode; must not crash (ASan/UBSan check it)
    Series fresh;
    const WindowHandle fw = fresh.addWindow(10s);
    fresh.add(t0, eventsOnly(5));
    CHECK_FALSE(fresh.restore(bytes + "x"));
    CHECK(fresh.window(fw).events() == 5);

    HistogramSettings ns;
    ns.highest = 3'600'000'000'000;
    ns.units_per_second = 1e9;
    Series nanos(ns);
    nanos.addWindow(10s);
    CHECK_FALSE(nanos.restore(bytes));
    CHECK(target.window(w).events() >= 0);
}
