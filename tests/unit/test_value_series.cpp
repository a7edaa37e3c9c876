// Value series in the store: the points (time, value) scrape sources feed through
// IntervalStats::last_value, read by the rules' value, increase and growth metrics.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rollguard/agent/sliding_window.h"
#include "rollguard/rules/stats.h"

using namespace std::chrono_literals;
using namespace std::string_view_literals;
using rollguard::agent::IntervalRecorder;
using rollguard::agent::IntervalStats;
using rollguard::agent::Series;
using rollguard::agent::WindowHandle;
using rollguard::agent::WindowView;
using rollguard::rules::computeMetric;
using rollguard::rules::MetricKind;
using rollguard::rules::MetricSpec;
using rollguard::rules::MetricValue;
using rollguard::rules::TimePoint;

namespace {

// A whole hour, so every slot width divides it and slot i starts at t0 + i widths.
const TimePoint t0{std::chrono::hours{472'222}};

/// What a scrape source hands the store for one scrape: one value.
IntervalStats scrape(double value) {
    IntervalStats s;
    s.value_sum = value;
    s.value_count = 1;
    s.last_value = value;
    return s;
}

MetricValue metric(const WindowView& w, MetricKind kind) {
    MetricSpec spec;
    spec.kind = kind;
    return computeMetric(spec, w.asSeriesStats());
}

std::vector<std::pair<double, double>> pointsOf(const WindowView& w) {
    std::vector<std::pair<double, double>> out;
    w.forEach([&](double t, double v) { out.emplace_back(t, v); });
    return out;
}

}  // namespace

TEST_CASE("value series: value is the newest point in the window - no data once it leaves", "[store][values]") {
    Series s;
    const WindowHandle h = s.addWindow(10s);  // 100 ms slots
    const WindowView& w = s.window(h);

    CHECK_FALSE(metric(w, MetricKind::Value).value.has_value());
    CHECK_FALSE(w.asSeriesStats().last_value.has_value());

    s.add(t0, scrape(5.0));
    s.add(t0 + 1s, scrape(7.0));
    MetricValue v = metric(w, MetricKind::Value);
    REQUIRE(v.value.has_value());
    CHECK(*v.value == 7.0);
    CHECK(v.samples == 2);
    CHECK(w.pointCount() == 2);

    // The slot of t0 leaves a 10 s window at t0 + 10 s: only the second point is left.
    s.advance(t0 + 10s);
    CHECK(w.pointCount() == 1);
    v = metric(w, MetricKind::Value);
    CHECK(v.value == 7.0);
    CHECK(v.samples == 1);
    s.advance(t0 + 10s + 900ms);
    CHECK(metric(w, MetricKind::Value).value == 7.0);

    // And the second at t0 + 11 s: no point, no data (no_data applies).
    s.advance(t0 + 11s);
    CHECK(w.pointCount() == 0);
    CHECK_FALSE(w.asSeriesStats().last_value.has_value());
    v = metric(w, MetricKind::Value);
    CHECK_FALSE(v.value.has_value());
    CHECK(v.samples == 0);
    CHECK(s.points() == 0);  // no window covers them: dropped

    // A gauge that reads 0 is a value, not missing data.
    s.add(t0 + 12s, scrape(0.0));
    CHECK(metric(w, MetricKind::Value).value == 0.0);
}

TEST_CASE("value series: increase is the sum of the values in the window", "[store][values]") {
    Series s;
    const WindowView& w = s.window(s.addWindow(10s));
    s.add(t0, scrape(3.0));
    s.add(t0 + 4s, scrape(4.0));
    s.add(t0 + 8s, scrape(5.0));
    CHECK(metric(w, MetricKind::Increase).value == 12.0);
    CHECK(metric(w, MetricKind::Increase).samples == 3);
    s.advance(t0 + 10s);
    CHECK(metric(w, MetricKind::Increase).value == 9.0);
    s.advance(t0 + 17s + 900ms);
    CHECK(metric(w, MetricKind::Increase).value == 5.0);
    s.advance(t0 + 18s);
    CHECK_FALSE(metric(w, MetricKind::Increase).value.has_value());
}

TEST_CASE("value series: growth of a series rising 10 percent an hour is about 0.10", "[store][values]") {
    Series s;
    const WindowView& hour = s.window(s.addWindow(1h));  // 60 slots of 1 min
    // Scraped every 15 s for two hours: value = 100 * e^(0.10 * hours), +10 %/h at every instant.
    for (int i = 0; i <= 2 * 240; ++i) {
        const double hours = static_cast<double>(i) * 15.0 / 3600.0;
        s.add(t0 + std::chrono::seconds{15 * i}, scrape(100.0 * std::exp(0.10 * hours)));
    }
    // At +2 h the open slot is [+2h, +2h 1m): the window's 60 slots start at +1h 1m, so
    // it holds the scrapes from +1h 1m to +2 h, 237 of them.
    CHECK(hour.pointCount() == 237);
    const MetricValue g = metric(hour, MetricKind::Growth);
    REQUIRE(g.value.has_value());
    CHECK(*g.value == Approx(0.10).epsilon(0.005));
    CHECK(g.samples == 237);

    // The points are seconds since the window's start, within the window.
    const auto pts = pointsOf(hour);
    REQUIRE(pts.size() == 237);
    CHECK(pts.front().first >= 0.0);
    CHECK(pts.back().first < 3600.0);
    CHECK(pts.back().first - pts.front().first == Approx(236 * 15.0));
}

TEST_CASE("value series: windows of different lengths on one series see different points", "[store][values]") {
    Series s;
    const WindowView& short_w = s.window(s.addWindow(10s));
    const WindowView& long_w = s.window(s.addWindow(60s));
    // Flat at 100 for 50 s, then rising 1 per second.
    for (int i = 0; i < 60; ++i) {
        s.add(t0 + std::chrono::seconds{i}, scrape(i < 50 ? 100.0 : 100.0 + (i - 49)));
    }
    CHECK(short_w.pointCount() == 10);
    CHECK(long_w.pointCount() == 60);
    CHECK(metric(short_w, MetricKind::Value).value == 110.0);
    CHECK(metric(long_w, MetricKind::Value).value == 110.0);
    CHECK(metric(short_w, MetricKind::Increase).value == Approx(10 * 100.0 + 55.0));
    CHECK(metric(long_w, MetricKind::Increase).value == Approx(60 * 100.0 + 55.0));

    const auto g_short = metric(short_w, MetricKind::Growth).value;
    const auto g_long = metric(long_w, MetricKind::Growth).value;
    REQUIRE(g_short.has_value());
    REQUIRE(g_long.has_value());
    // 1/s over a mean of 105.5 in the short window; the long one is mostly flat.
    CHECK(*g_short == Approx(3600.0 / 105.5).epsilon(1e-9));
    CHECK(*g_long > 0.0);
    CHECK(*g_long < *g_short / 2.0);

    // The series keeps the points of its longest window only: at t0 + 100 s the 60 s
    // window (200 ms slots) starts at t0 + 40.2 s.
    s.advance(t0 + 100s);
    CHECK(s.points() == 19);
    CHECK(short_w.pointCount() == 0);
    CHECK(long_w.pointCount() == 19);
}

TEST_CASE("value series: the view shows the current state", "[store][values]") {
    Series s;
    const WindowView& w = s.window(s.addWindow(30s));
    const rollguard::rules::PointsView& view = w;
    s.add(t0, scrape(1.0));
    std::size_t seen = 0;
    view.forEach([&](double, double) { ++seen; });
    CHECK(seen == 1);
    s.add(t0 + 1s, scrape(2.0));
    s.add(t0 + 2s, scrape(3.0));
    seen = 0;
    view.forEach([&](double, double) { ++seen; });
    CHECK(seen == 3);
    CHECK(w.lastValue() == 3.0);
}

TEST_CASE("value series: several adds at one time keep the later value - distinct times keep both",
          "[store][values]") {
    Series s;
    const WindowView& w = s.window(s.addWindow(10s));
    s.add(t0, scrape(1.0));
    s.add(t0, scrape(2.0));
    CHECK(s.points() == 1);
    CHECK(metric(w, MetricKind::Value).value == 2.0);
    CHECK(metric(w, MetricKind::Increase).value == 3.0);  // the sums keep both
    // Two times in one slot are two points.
    s.add(t0 + 10ms, scrape(4.0));
    CHECK(s.points() == 2);
    // An interval without a last_value (events only) adds no point.
    IntervalStats events;
    events.events = 3;
    s.add(t0 + 1s, events);
    CHECK(s.points() == 2);
    CHECK(metric(w, MetricKind::Value).value == 4.0);
    // A clock step back is clamped to the newest time, as the slots are: it replaces.
    s.add(t0 + 500ms, scrape(9.0));
    CHECK(s.points() == 3);
    CHECK(pointsOf(w).back().second == 9.0);
    CHECK(pointsOf(w).back().first == Approx(pointsOf(w)[1].first + 0.99));
}

TEST_CASE("value series: addAt puts a late point in time order", "[store][values]") {
    Series s;
    const WindowView& w = s.window(s.addWindow(10s));
    s.add(t0, scrape(1.0));
    s.add(t0 + 2s, scrape(3.0));
    s.addAt(t0 + 1s, scrape(2.0));
    const auto pts = pointsOf(w);
    REQUIRE(pts.size() == 3);
    CHECK(pts[0].second == 1.0);
    CHECK(pts[1].second == 2.0);
    CHECK(pts[2].second == 3.0);
    CHECK(pts[1].first - pts[0].first == Approx(1.0));
    CHECK(pts[2].first - pts[1].first == Approx(1.0));
    // The newest point is still the newest in time, not the last to arrive.
    CHECK(metric(w, MetricKind::Value).value == 3.0);
    CHECK(metric(w, MetricKind::Increase).value == 6.0);

    // Late at an existing point's time: the later arrival replaces it.
    s.addAt(t0 + 1s, scrape(2.5));
    REQUIRE(pointsOf(w).size() == 3);
    CHECK(pointsOf(w)[1].second == 2.5);

    // Late for a slot no window covers any more: dropped, like the slot data. At
    // t0 + 11.5 s the window starts at t0 + 1.6 s.
    s.advance(t0 + 11s + 500ms);
    REQUIRE(pointsOf(w).size() == 1);
    s.addAt(t0 + 1s, scrape(50.0));
    CHECK(s.points() == 1);
    CHECK(metric(w, MetricKind::Value).value == 3.0);

    // addAt at or after the newest time is add().
    s.addAt(t0 + 13s, scrape(4.0));
    CHECK(metric(w, MetricKind::Value).value == 4.0);

    // In time or late, the same points and the same bytes.
    Series in_time;
    Series late;
    in_time.addWindow(10s);
    late.addWindow(10s);
    for (int i : {0, 1, 2, 3}) {
        in_time.add(t0 + std::chrono::seconds{i}, scrape(i));
    }
    late.add(t0, scrape(0));
    late.add(t0 + 3s, scrape(3));
    late.addAt(t0 + 2s, scrape(2));
    late.addAt(t0 + 1s, scrape(1));
    CHECK(in_time.serialize() == late.serialize());
}

TEST_CASE("value series: serialize and restore keep value and growth", "[store][values]") {
    Series a;
    const WindowView& a10 = a.window(a.addWindow(10min));
    const WindowView& a60 = a.window(a.addWindow(1h));
    for (int i = 0; i < 400; ++i) {
        a.add(t0 + std::chrono::seconds{10 * i}, scrape(50.0 + 0.01 * i + (i % 3)));
    }
    const std::string bytes = a.serialize();

    Series b;
    const WindowView& b10 = b.window(b.addWindow(10min));
    const WindowView& b60 = b.window(b.addWindow(1h));
    REQUIRE(b.restore(bytes));
    CHECK(b.points() == a.points());
    CHECK(b.serialize() == bytes);
    const auto same = [&] {
        for (const auto& [x, y] : {std::pair{&a10, &b10}, std::pair{&a60, &b60}}) {
            CHECK(pointsOf(*x) == pointsOf(*y));
            for (const auto kind : {MetricKind::Value, MetricKind::Increase, MetricKind::Growth}) {
                const MetricValue mx = metric(*x, kind);
                const MetricValue my = metric(*y, kind);
                INFO("metric kind " << static_cast<int>(kind));
                REQUIRE(mx.value.has_value());
                REQUIRE(my.value.has_value());
                CHECK(*mx.value == Approx(*my.value).epsilon(1e-12));
                CHECK(mx.samples == my.samples);
            }
        }
    };
    same();
    // And they go on alike.
    for (int i = 400; i < 500; ++i) {
        a.add(t0 + std::chrono::seconds{10 * i}, scrape(60.0 - 0.02 * i));
        b.add(t0 + std::chrono::seconds{10 * i}, scrape(60.0 - 0.02 * i));
    }
    same();

    // A series registering only the short window keeps only its points.
    Series c;
    const WindowView& c10 = c.window(c.addWindow(10min));
    REQUIRE(c.restore(a.serialize()));
    CHECK(pointsOf(c10) == pointsOf(a10));
    CHECK(c.points() == a10.pointCount());

    // Corrupt point sections are refused and change nothing.
    const std::string good = b.serialize();
    const std::size_t before = b.points();
    for (const std::size_t cut : {std::size_t{1}, std::size_t{5}, std::size_t{16}}) {
        CHECK_FALSE(b.restore(std::string_view(good).substr(0, good.size() - cut)));
    }
    CHECK(b.points() == before);
    CHECK(pointsOf(b10) == pointsOf(a10));
}

TEST_CASE("value series: bytes of the format before points still restore", "[store][values]") {
    // Format 1, written by the store before value points existed (printed by the code of
    // commit b10834c): a 10 s window (100 ms slots) given 5 events and a value of 4 at
    // t0 + 3 s, then a value of 2.5 at t0 + 5 s (value_count 1 each).
    constexpr std::string_view kFormat1 =
        "\x01\x01\x80\xc8\xce\xb4\x0d\x03\x00\x00\x00\x00\x80\x84\x2e\x41\x01\x80\xf8\x98\xd4\x94\x91\xce\x97\x2f"
        "\x01\x80\xc8\xc5\xc7\xa3\x91\xce\x97\x2f\x01\x80\xc2\xd7\x2f\x01\xe4\xab\xba\xd4\x7e\x00\x00\x00\x00\x00"
        "\x00\x00\x00\x04\x40\x01\x00\x00\x01\xbc\xab\xba\xd4\x7e\x05\x00\x00\x00\x00\x00\x00\x00\x10\x40\x01\x00"
        "\x00"sv;

    Series s;
    const WindowView& w = s.window(s.addWindow(10s));
    REQUIRE(s.restore(kFormat1));
    CHECK(s.points() == 0);
    CHECK(w.events() == 5);
    CHECK(metric(w, MetricKind::Increase).value == 6.5);
    CHECK(metric(w, MetricKind::Increase).samples == 2);
    // No point was saved: value has no data until the next scrape.
    CHECK_FALSE(metric(w, MetricKind::Value).value.has_value());
    s.add(t0 + 6s, scrape(6.0));
    CHECK(metric(w, MetricKind::Value).value == 6.0);
    CHECK(metric(w, MetricKind::Increase).value == 12.5);

    // Format 2 is format 1 with the point section appended (here: none).
    Series writer;
    writer.addWindow(10s);
    IntervalStats first;
    first.events = 5;
    first.value_sum = 4.0;
    first.value_count = 1;
    writer.add(t0 + 3s, first);
    IntervalStats second;
    second.value_sum = 2.5;
    second.value_count = 1;
    writer.add(t0 + 5s, second);
    std::string now = writer.serialize();
    REQUIRE(static_cast<unsigned char>(now.front()) == 2);
    CHECK(now.substr(1) == std::string(kFormat1.substr(1)) + '\0');

    // An unknown format is refused.
    std::string unknown(kFormat1);
    unknown[0] = 3;
    CHECK_FALSE(s.restore(unknown));
    CHECK(metric(w, MetricKind::Value).value == 6.0);
}

TEST_CASE("value series: at most kMaxPoints points - the oldest dropped and counted", "[store][values]") {
    Series s;
    const WindowView& day = s.window(s.addWindow(24h));
    const std::size_t extra = 50;
    const std::size_t empty_bytes = s.memoryBytes();
    for (std::size_t i = 0; i < Series::kMaxPoints + extra; ++i) {
        s.add(t0 + std::chrono::seconds{static_cast<std::int64_t>(i)}, scrape(static_cast<double>(i)));
    }
    CHECK(s.points() == Series::kMaxPoints);
    CHECK(s.pointsDropped() == extra);
    CHECK(day.pointCount() == Series::kMaxPoints);
    const auto pts = pointsOf(day);
    REQUIRE(pts.size() == Series::kMaxPoints);
    CHECK(pts.front().second == static_cast<double>(extra));
    CHECK(metric(day, MetricKind::Value).value == static_cast<double>(Series::kMaxPoints + extra - 1));
    // The sums are the slots', not the points': they keep every value.
    CHECK(metric(day, MetricKind::Increase).samples == static_cast<std::int64_t>(Series::kMaxPoints + extra));
    // memoryBytes counts the points.
    CHECK(s.memoryBytes() >= empty_bytes + Series::kMaxPoints * sizeof(rollguard::agent::ValuePoint));
}

TEST_CASE("value series: the recorder keeps the newest value of an interval", "[store][values]") {
    IntervalRecorder recorder;
    recorder.recordValue(3.0);
    recorder.recordValue(5.0);
    recorder.recordValue(std::nan(""));  // ignored
    IntervalStats taken = recorder.take();
    CHECK(taken.value_count == 2);
    CHECK(taken.value_sum == 8.0);
    CHECK(taken.last_value == 5.0);
    CHECK_FALSE(recorder.take().last_value.has_value());

    // Merging keeps the later interval's value, when it has one.
    recorder.recordValue(1.0);
    IntervalStats events;
    events.events = 2;
    recorder.recordBatch(events);
    CHECK(recorder.take().last_value == 1.0);
    recorder.recordValue(1.0);
    recorder.recordBatch(scrape(7.0));
    taken = recorder.take();
    CHECK(taken.last_value == 7.0);
    CHECK(taken.value_count == 2);

    // A value alone makes an interval non-empty; reset clears it.
    IntervalStats only_last;
    only_last.last_value = 1.0;
    CHECK_FALSE(only_last.empty());
    only_last.reset();
    CHECK(only_last.empty());
    CHECK_FALSE(only_last.last_value.has_value());
}
