#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numbers>
#include <random>
#include <string>
#include <stdexcept>
#include <vector>

#include "rollguard/agent/hdr_histogram.h"

using rollguard::agent::HdrHistogram;

namespace {

constexpr std::int64_t kHour = 3'600'000'000;  // 1 h in microseconds

// The k-th smallest value under the same rank rule as valueAtPercentile.
std::int64_t referencePercentile(const std::vector<std::int64_t>& sorted, double p) {
    const auto n = static_cast<std::int64_t>(sorted.size());
    const auto rank = std::max<std::int64_t>(1, static_cast<std::int64_t>(p / 100.0 * static_cast<double>(n) + 0.5));
    return sorted[static_cast<std::size_t>(std::min(rank, n) - 1)];
}

const std::vector<double> kPercentiles = {0.0,  0.1,  1.0,  5.0,  10.0, 25.0,  33.3,   50.0,  66.6, 75.0,
                                          90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0};

void checkPercentilesAgainstReference(const std::vector<std::int64_t>& data, HdrHistogram& h) {
    for (std::int64_t v : data) {
        REQUIRE(h.record(v));
    }
    REQUIRE(h.totalCount() == static_cast<std::int64_t>(data.size()));
    std::vector<double> ps = kPercentiles;
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> any(0.0, 100.0);
    for (int i = 0; i < 200; ++i) {
        ps.push_back(any(rng));
    }
    std::vector<std::int64_t> sorted = data;
    std::sort(sorted.begin(), sorted.end());
    for (double p : ps) {
        const std::int64_t ref = referencePercentile(sorted, p);
        INFO("p=" << p << " reference=" << ref);
        CHECK(h.valueAtPercentile(p) == h.highestEquivalentValue(ref));
    }
    const auto [lo, hi] = std::minmax_element(data.begin(), data.end());
    CHECK(h.min() == h.lowestEquivalentValue(*lo));
    CHECK(h.max() == h.highestEquivalentValue(*hi));
}

}  // namespace

TEST_CASE("hdr layout matches HdrHistogram's numbers", "[store][hdr]") {
    struct Case {
        std::int64_t lowest;
        std::int64_t highest;
        int sigfigs;
        std::int32_t sub_bucket_count;
        std::int32_t unit_magnitude;
        std::int32_t bucket_count;
        std::int32_t counts_len;
    };
    const std::vector<Case> cases = {
        {1, kHour, 3, 2048, 0, 22, 23552},
        {1, kHour, 1, 32, 0, 28, 464},
        {1, kHour, 2, 256, 0, 25, 3328},
        {1, kHour, 5, 262144, 0, 15, 2097152},
        {1000, kHour, 3, 2048, 9, 13, 14336},
        {1024, kHour, 3, 2048, 10, 12, 13312},
        {1, 2, 3, 2048, 0, 1, 2048},
        {1, 2047, 3, 2048, 0, 1, 2048},
        {1, 2048, 3, 2048, 0, 2, 3072},
    };
    for (const Case& c : cases) {
        INFO("lowest=" << c.lowest << " highest=" << c.highest << " sigfigs=" << c.sigfigs);
        HdrHistogram h(c.lowest, c.highest, c.sigfigs);
        CHECK(h.subBucketCount() == c.sub_bucket_count);
        CHECK(h.subBucketHalfCount() == c.sub_bucket_count / 2);
        CHECK(h.unitMagnitude() == c.unit_magnitude);
        CHECK(h.bucketCount() == c.bucket_count);
        CHECK(h.countsLength() == c.counts_len);
        // The highest trackable value always has a slot.
        CHECK(h.countsIndexFor(c.highest) < h.countsLength());
    }
}

TEST_CASE("hdr refuses invalid configurations", "[store][hdr]") {
    CHECK_THROWS_AS(HdrHistogram(0, 100, 3), std::invalid_argument);
    CHECK_THROWS_AS(HdrHistogram(10, 19, 3), std::invalid_argument);
    CHECK_THROWS_AS(HdrHistogram(1, 100, 0), std::invalid_argument);
    CHECK_THROWS_AS(HdrHistogram(1, 100, 6), std::invalid_argument);
    CHECK_THROWS_AS(HdrHistogram(std::int64_t{1} << 58, std::int64_t{1} << 60, 5), std::invalid_argument);
    CHECK_NOTHROW(HdrHistogram(10, 20, 3));
    CHECK_NOTHROW(HdrHistogram(1, INT64_MAX, 3));
}

TEST_CASE("hdr equivalent ranges match HdrHistogram's", "[store][hdr]") {
    HdrHistogram h(1, kHour, 3);
    CHECK(h.sizeOfEquivalentValueRange(1) == 1);
    CHECK(h.sizeOfEquivalentValueRange(2500) == 2);
    CHECK(h.sizeOfEquivalentValueRange(8191) == 4);
    CHECK(h.sizeOfEquivalentValueRange(8192) == 8);
    CHECK(h.sizeOfEquivalentValueRange(10000) == 8);

    CHECK(h.lowestEquivalentValue(10007) == 10000);
    CHECK(h.lowestEquivalentValue(10009) == 10008);

    CHECK(h.highestEquivalentValue(8180) == 8183);
    CHECK(h.highestEquivalentValue(8191) == 8191);
    CHECK(h.highestEquivalentValue(8193) == 8199);
    CHECK(h.highestEquivalentValue(9995) == 9999);
    CHECK(h.highestEquivalentValue(10007) == 10007);
    CHECK(h.highestEquivalentValue(10008) == 10015);

    CHECK(h.medianEquivalentValue(4) == 4);
    CHECK(h.medianEquivalentValue(5) == 5);
    CHECK(h.medianEquivalentValue(4000) == 4001);
    CHECK(h.medianEquivalentValue(8000) == 8002);
    CHECK(h.medianEquivalentValue(10007) == 10004);

    CHECK(h.valuesAreEquivalent(10000, 10007));
    CHECK_FALSE(h.valuesAreEquivalent(10007, 10008));

    SECTION("scaled by a lowest of 1024") {
        HdrHistogram s(1024, kHour * 1024, 3);
        CHECK(s.sizeOfEquivalentValueRange(1 * 1024) == 1024);
        CHECK(s.sizeOfEquivalentValueRange(2500 * 1024) == 2 * 1024);
        CHECK(s.sizeOfEquivalentValueRange(8191 * 1024) == 4 * 1024);
        CHECK(s.sizeOfEquivalentValueRange(8192 * 1024) == 8 * 1024);
        CHECK(s.sizeOfEquivalentValueRange(10000 * 1024) == 8 * 1024);
        CHECK(s.lowestEquivalentValue(10007 * 1024) == 10000 * 1024);
        CHECK(s.highestEquivalentValue(10008 * 1024) == 10016 * 1024 - 1);
    }
}

TEST_CASE("hdr index and value round-trip over the whole counts array", "[store][hdr]") {
    for (int sigfigs = 1; sigfigs <= 3; ++sigfigs) {
        for (std::int64_t lowest : {std::int64_t{1}, std::int64_t{1000}}) {
            HdrHistogram h(lowest, kHour, sigfigs);
            INFO("sigfigs=" << sigfigs << " lowest=" << lowest);
            std::int64_t previous_high = -1;
            // Index 0..half-1 of bucket 0 and the upper halves of all buckets tile [0, top].
            for (std::int32_t i = 0; i < h.countsLength(); ++i) {
                const std::int64_t v = h.valueAtIndex(i);
                REQUIRE(h.countsIndexFor(v) == i);
                REQUIRE(h.lowestEquivalentValue(v) == v);
                REQUIRE(h.highestEquivalentValue(v) == v + h.sizeOfEquivalentValueRange(v) - 1);
                REQUIRE(h.countsIndexFor(h.highestEquivalentValue(v)) == i);
                REQUIRE(v == previous_high + 1);
                previous_high = h.highestEquivalentValue(v);
                // The promise of the significant figures: the range is a small part of the value.
                if (v >= lowest * h.subBucketHalfCount()) {
                    REQUIRE(static_cast<double>(h.sizeOfEquivalentValueRange(v)) / static_cast<double>(v) <=
                            2.0 * std::pow(10.0, -sigfigs));
                }
            }
        }
    }
}

TEST_CASE("hdr empty histogram answers zero", "[store][hdr]") {
    HdrHistogram h(1, kHour, 3);
    CHECK(h.totalCount() == 0);
    CHECK(h.valueAtPercentile(50) == 0);
    CHECK(h.valueAtPercentile(100) == 0);
    CHECK(h.min() == 0);
    CHECK(h.max() == 0);
    CHECK(h.mean() == 0.0);
    CHECK(h.stddev() == 0.0);
    int calls = 0;
    h.forEachNonZero([&calls](std::int32_t, std::int64_t) { ++calls; });
    CHECK(calls == 0);
}

TEST_CASE("hdr records, refuses negatives and clamps overflow into the top slot", "[store][hdr]") {
    HdrHistogram h(1, 1'000'000, 3);
    CHECK_FALSE(h.record(-1));
    CHECK_FALSE(h.record(5, 0));
    CHECK_FALSE(h.record(5, -3));
    CHECK(h.totalCount() == 0);

    CHECK(h.record(0));
    CHECK(h.record(1000, 3));
    CHECK(h.record(5'000'000, 2));
    CHECK(h.record(1'000'000));
    CHECK(h.totalCount() == 7);
    CHECK(h.overflowCount() == 2);
    CHECK(h.countAtIndex(h.countsIndexFor(1'000'000)) == 3);
    CHECK(h.countAtIndex(h.countsIndexFor(1000)) == 3);
    CHECK(h.countAtIndex(0) == 1);
    CHECK(h.min() == 0);
    CHECK(h.max() == h.highestEquivalentValue(1'000'000));
    CHECK(h.valueAtPercentile(100) == h.highestEquivalentValue(1'000'000));
    CHECK(h.valueAtPercentile(0) == 0);
    CHECK(h.valueAtPercentile(50) == 1000);  // rank 4 of 7
    CHECK(h.valueAtPercentile(-5) == 0);
    CHECK(h.valueAtPercentile(250) == h.highestEquivalentValue(1'000'000));
    CHECK(h.valueAtPercentile(std::nan("")) == 0);

    std::vector<std::pair<std::int32_t, std::int64_t>> seen;
    h.forEachNonZero([&seen](std::int32_t i, std::int64_t c) { seen.emplace_back(i, c); });
    const std::vector<std::pair<std::int32_t, std::int64_t>> expected = {
        {0, 1}, {h.countsIndexFor(1000), 3}, {h.countsIndexFor(1'000'000), 3}};
    CHECK(seen == expected);

    h.reset();
    CHECK(h.totalCount() == 0);
    CHECK(h.overflowCount() == 0);
    CHECK(h.countAtIndex(h.countsIndexFor(1000)) == 0);
    CHECK(h.max() == 0);
    CHECK(h.record(7));
    CHECK(h.min() == 7);
    CHECK(h.max() == 7);
}

TEST_CASE("hdr percentiles of 16 values follow the rank rule", "[store][hdr]") {
    HdrHistogram h(1, kHour, 3);
    for (std::int64_t v = 1; v <= 16; ++v) {
        h.record(v * 100);
    }
    // rank = max(1, floor(p/100 * 16 + 0.5)): p90 -> 14.9 -> 14th value.
    CHECK(h.valueAtPercentile(90) == 1400);
    CHECK(h.valueAtPercentile(50) == 800);
    CHECK(h.valueAtPercentile(0) == 100);
    CHECK(h.valueAtPercentile(1) == 100);
    CHECK(h.valueAtPercentile(3.2) == 100);   // 0.512 + 0.5 -> rank 1
    CHECK(h.valueAtPercentile(9.4) == 200);   // 1.504 + 0.5 -> rank 2
    CHECK(h.valueAtPercentile(96.9) == 1600);  // 15.504 + 0.5 -> rank 16
    CHECK(h.valueAtPercentile(96.8) == 1500);  // 15.488 + 0.5 -> rank 15
    CHECK(h.valueAtPercentile(100) == 1600);
}

TEST_CASE("hdr percentiles equal the exact reference up to equivalence", "[store][hdr]") {
    std::mt19937_64 rng(20240611);

    SECTION("uniform 1 us .. 10 s") {
        std::uniform_int_distribution<std::int64_t> dist(1, 10'000'000);
        for (std::size_t n : {1u, 2u, 3u, 16u, 100u, 1000u, 25'000u}) {
            std::vector<std::int64_t> data(n);
            for (auto& v : data) {
                v = dist(rng);
            }
            HdrHistogram h(1, kHour, 3);
            INFO("n=" << n);
            checkPercentilesAgainstReference(data, h);
        }
    }
    SECTION("lognormal latencies") {
        std::lognormal_distribution<double> dist(std::log(20'000.0), 1.2);
        for (int sigfigs : {1, 2, 3, 4}) {
            std::vector<std::int64_t> data(20'000);
            for (auto& v : data) {
                v = std::min<std::int64_t>(kHour, std::llround(dist(rng)));
            }
            HdrHistogram h(1, kHour, sigfigs);
            INFO("sigfigs=" << sigfigs);
            checkPercentilesAgainstReference(data, h);
        }
    }
    SECTION("heavy duplicates") {
        std::uniform_int_distribution<int> pick(0, 4);
        const std::int64_t values[] = {3, 150, 150'000, 150'001, 2'999'999};
        std::vector<std::int64_t> data(5000);
        for (auto& v : data) {
            v = values[pick(rng)];
        }
        HdrHistogram h(1, kHour, 3);
        checkPercentilesAgainstReference(data, h);
    }
    SECTION("lowest of 1000 (millisecond resolution)") {
        std::lognormal_distribution<double> dist(std::log(200'000.0), 0.8);
        std::vector<std::int64_t> data(10'000);
        for (auto& v : data) {
            v = std::llround(dist(rng));
        }
        HdrHistogram h(1000, kHour, 2);
        checkPercentilesAgainstReference(data, h);
    }
}

TEST_CASE("hdr mean and stddev match the reference within equivalent precision", "[store][hdr]") {
    std::mt19937_64 rng(99);
    std::lognormal_distribution<double> dist(std::log(5'000.0), 0.9);
    std::vector<std::int64_t> data(50'000);
    HdrHistogram h(1, kHour, 3);
    double sum = 0;
    for (auto& v : data) {
        v = std::llround(dist(rng));
        h.record(v);
        sum += static_cast<double>(v);
    }
    const double mean = sum / static_cast<double>(data.size());
    double sq = 0;
    for (auto v : data) {
        sq += (static_cast<double>(v) - mean) * (static_cast<double>(v) - mean);
    }
    const double sd = std::sqrt(sq / static_cast<double>(data.size()));
    // Every value moves by at most half a range (<= 0.1% of it) to its median equivalent.
    CHECK(h.mean() == Approx(mean).epsilon(1e-3));
    CHECK(h.stddev() == Approx(sd).epsilon(2e-3));

    HdrHistogram exact(1, kHour, 3);
    exact.record(10, 2);
    exact.record(20, 2);
    CHECK(exact.mean() == 15.0);
    CHECK(exact.stddev() == 5.0);
}

TEST_CASE("hdr add and subtract are exact", "[store][hdr]") {
    std::mt19937_64 rng(5);
    std::lognormal_distribution<double> dist(std::log(30'000.0), 1.3);
    HdrHistogram a(1, 1'000'000, 3);
    HdrHistogram b(1, 1'000'000, 3);
    HdrHistogram both(1, 1'000'000, 3);
    for (int i = 0; i < 10'000; ++i) {
        const auto v = std::llround(dist(rng));
        (i % 3 == 0 ? a : b).record(v);
        both.record(v);
    }
    REQUIRE(a.overflowCount() + b.overflowCount() == both.overflowCount());
    REQUIRE(both.overflowCount() > 0);

    HdrHistogram sum = a;
    sum.add(b);
    CHECK(sum.totalCount() == both.totalCount());
    CHECK(sum.overflowCount() == both.overflowCount());
    for (std::int32_t i = 0; i < sum.countsLength(); ++i) {
        REQUIRE(sum.countAtIndex(i) == both.countAtIndex(i));
    }
    CHECK(sum.min() == both.min());
    CHECK(sum.max() == both.max());
    CHECK(sum.valueAtPercentile(99.9) == both.valueAtPercentile(99.9));

    sum.subtract(b);
    CHECK(sum.totalCount() == a.totalCount());
    CHECK(sum.overflowCount() == a.overflowCount());
    for (std::int32_t i = 0; i < sum.countsLength(); ++i) {
        REQUIRE(sum.countAtIndex(i) == a.countAtIndex(i));
    }
    CHECK(sum.min() == a.min());
    CHECK(sum.max() == a.max());
    CHECK(sum.mean() == a.mean());

    SECTION("subtracting everything empties it") {
        sum.subtract(a);
        CHECK(sum.totalCount() == 0);
        CHECK(sum.min() == 0);
        CHECK(sum.max() == 0);
        CHECK(sum.valueAtPercentile(50) == 0);
        sum.record(42);
        CHECK(sum.min() == 42);
        CHECK(sum.max() == 42);
    }
    SECTION("subtract recomputes min and max") {
        HdrHistogram h(1, 1'000'000, 3);
        h.record(10);
        h.record(500);
        h.record(90'000);
        HdrHistogram ends(1, 1'000'000, 3);
        ends.record(10);
        ends.record(90'000);
        h.subtract(ends);
        CHECK(h.totalCount() == 1);
        CHECK(h.min() == 500);
        CHECK(h.max() == 500);
    }
    SECTION("subtracting more than is there throws and changes nothing") {
        HdrHistogram h(1, 1'000'000, 3);
        h.record(10);
        h.record(500);
        HdrHistogram more(1, 1'000'000, 3);
        more.record(10);
        more.record(500, 2);
        CHECK_THROWS_AS(h.subtract(more), std::invalid_argument);
        CHECK(h.totalCount() == 2);
        CHECK(h.countAtIndex(h.countsIndexFor(10)) == 1);
        CHECK(h.countAtIndex(h.countsIndexFor(500)) == 1);

        HdrHistogram over(1, 1'000'000, 3);
        over.record(2'000'000);
        h.record(1'000'000);  // same slot as the overflow, but not an overflow
        CHECK_THROWS_AS(h.subtract(over), std::invalid_argument);
        CHECK(h.totalCount() == 3);
    }
}

TEST_CASE("hdr add/subtract refuse a different configuration", "[store][hdr]") {
    HdrHistogram h(1, kHour, 3);
    HdrHistogram other_figs(1, kHour, 2);
    HdrHistogram other_high(1, kHour / 2, 3);
    HdrHistogram other_low(2, kHour, 3);
    CHECK_FALSE(h.sameConfiguration(other_figs));
    CHECK_FALSE(h.sameConfiguration(other_low));
    CHECK(h.sameConfiguration(HdrHistogram(1, kHour, 3)));
    CHECK_THROWS_AS(h.add(other_figs), std::invalid_argument);
    CHECK_THROWS_AS(h.add(other_high), std::invalid_argument);
    CHECK_THROWS_AS(h.subtract(other_low), std::invalid_argument);
}

TEST_CASE("hdr addAtIndex rebuilds a histogram and ignores bad input", "[store][hdr]") {
    HdrHistogram src(1, kHour, 3);
    for (std::int64_t v : {1, 77, 77, 4096, 123'456, 999'999'999}) {
        src.record(v);
    }
    HdrHistogram dst(1, kHour, 3);
    src.forEachNonZero([&dst](std::int32_t i, std::int64_t c) { dst.addAtIndex(i, c); });
    dst.addAtIndex(-1, 5);
    dst.addAtIndex(dst.countsLength(), 5);
    dst.addAtIndex(3, 0);
    dst.addAtIndex(3, -2);
    CHECK(dst.totalCount() == src.totalCount());
    for (double p : {0.0, 20.0, 50.0, 75.0, 100.0}) {
        CHECK(dst.valueAtPercentile(p) == src.valueAtPercentile(p));
    }
    CHECK(dst.min() == 1);
    CHECK(dst.max() == src.highestEquivalentValue(999'999'999));
    CHECK(dst.memoryBytes() >= static_cast<std::size_t>(dst.countsLength()) * sizeof(std::int64_t));
}

// ---------------------------------------------------------------------------------------
// Property tests: many generated distributions, every query checked against the exact
// answer computed from the same generated values.
// ---------------------------------------------------------------------------------------

namespace {

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

// Draws straight from mt19937_64, whose output sequence the standard fixes, so the data
// are the same on every platform. (The checks compare against the same vector anyway.)
class Draw {
public:
    explicit Draw(std::uint64_t seed) : rng_(seed) {}

    // Uniform in [lo, hi], 0 <= lo <= hi; the modulo bias does not matter here.
    std::int64_t between(std::int64_t lo, std::int64_t hi) {
        const std::uint64_t span = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo) + 1;
        return static_cast<std::int64_t>(static_cast<std::uint64_t>(lo) + rng_() % span);
    }
    // Uniform in [0, 1).
    double unit() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }
    // Standard normal (Box-Muller).
    double normal() {
        const double u1 = 1.0 - unit();
        const double u2 = unit();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
    }
    // Evenly spread over the binary orders of magnitude of [lo, hi], 1 <= lo <= hi.
    std::int64_t logUniform(std::int64_t lo, std::int64_t hi) {
        const auto k = static_cast<int>(between(floorLog2(lo), floorLog2(hi)));
        const std::int64_t first = std::max(lo, std::int64_t{1} << k);
        const std::int64_t last = k >= 62 ? hi : std::min(hi, (std::int64_t{1} << (k + 1)) - 1);
        return between(first, last);
    }

private:
    static std::int64_t floorLog2(std::int64_t v) {
        return static_cast<std::int64_t>(std::bit_width(static_cast<std::uint64_t>(v))) - 1;
    }
    std::mt19937_64 rng_;
};

struct Config {
    std::int64_t lowest;
    std::int64_t highest;
    int sigfigs;
};

std::string describe(const Config& c) {
    return "lowest=" + std::to_string(c.lowest) + " highest=" + std::to_string(c.highest) +
           " sigfigs=" + std::to_string(c.sigfigs);
}

// x << s, or -1 when that does not fit in int64 (callers drop negative values).
std::int64_t shiftedOrNegative(std::int64_t x, int s) {
    if (s >= 63 || x > (kInt64Max >> s)) {
        return -1;
    }
    return x << s;
}

// Values on slot and bucket boundaries of h's layout, each recorded 1..3 times: slot
// starts and ends at random indices, their neighbours, and the edges of every bucket's
// halves and first upper sub-bucket.
std::vector<std::int64_t> bucketEdgeValues(const HdrHistogram& h, Draw& draw) {
    std::vector<std::int64_t> edges;
    const std::int64_t highest = h.highestTrackableValue();
    auto keep = [&edges, highest](std::int64_t v) {
        if (v >= 0 && v <= highest) {
            edges.push_back(v);
        }
    };
    for (std::int32_t b = 0; b < h.bucketCount(); ++b) {
        const int shift = b + h.unitMagnitude();
        const std::int64_t half = shiftedOrNegative(h.subBucketHalfCount(), shift);
        const std::int64_t full = shiftedOrNegative(h.subBucketCount(), shift);
        const std::int64_t step = shiftedOrNegative(1, shift);
        if (half > 0) {
            keep(half - 1);
            keep(half);
            keep(half + 1);
            if (step > 0 && half <= kInt64Max - step) {
                keep(half + step - 1);
                keep(half + step);
            }
        }
        if (full > 0) {
            keep(full - 1);
            keep(full);
        }
    }
    for (int i = 0; i < 400; ++i) {
        const auto index = static_cast<std::int32_t>(draw.between(0, h.countsLength() - 1));
        const std::int64_t v = h.valueAtIndex(index);
        keep(v);
        keep(v - 1);
        keep(h.highestEquivalentValue(v));
        if (h.highestEquivalentValue(v) < kInt64Max) {
            keep(h.highestEquivalentValue(v) + 1);
        }
        keep(h.lowestEquivalentValue(draw.between(0, highest)));
        keep(h.highestEquivalentValue(draw.between(0, highest)));
    }
    keep(0);
    keep(h.lowestTrackableValue());
    keep(highest);
    std::vector<std::int64_t> data;
    for (std::int64_t v : edges) {
        for (std::int64_t k = draw.between(1, 3); k > 0; --k) {
            data.push_back(v);
        }
    }
    return data;
}

const std::vector<double> kPropertyPercentiles = {0.0,  0.1,  1.0,  10.0, 25.0, 50.0, 75.0,
                                                  90.0, 95.0, 99.0, 99.9, 99.99, 100.0};

// Checks every query of h, which holds exactly the values in `reference` (clamped already),
// at the fixed percentiles plus `extra` random ones and `extra` on the rank rule's edges.
void checkQueriesAgainstReference(const HdrHistogram& h, std::vector<std::int64_t> reference, Draw& draw,
                                  int extra = 12) {
    const auto n = static_cast<std::int64_t>(reference.size());
    REQUIRE(h.totalCount() == n);

    std::vector<double> ps = kPropertyPercentiles;
    for (int i = 0; i < extra; ++i) {
        ps.push_back(draw.unit() * 100.0);
    }
    // Percentiles whose p/100*N falls on an integer or a half: the edges of the rank rule.
    for (int i = 0; n > 0 && i < extra / 2; ++i) {
        const auto k = static_cast<double>(draw.between(0, n - 1));
        ps.push_back(100.0 * k / static_cast<double>(n));
        ps.push_back(100.0 * (k + 0.5) / static_cast<double>(n));
    }

    if (n == 0) {
        for (double p : ps) {
            CHECK(h.valueAtPercentile(p) == 0);
        }
        CHECK(h.min() == 0);
        CHECK(h.max() == 0);
        CHECK(h.mean() == 0.0);
        CHECK(h.stddev() == 0.0);
        CHECK(h.overflowCount() == 0);
        return;
    }

    std::sort(reference.begin(), reference.end());
    for (double p : ps) {
        const std::int64_t ref = referencePercentile(reference, p);
        const std::int64_t reported = h.valueAtPercentile(p);
        INFO("p=" << p << " reference=" << ref << " reported=" << reported);
        CHECK(reported == h.highestEquivalentValue(ref));
        CHECK(h.valuesAreEquivalent(reported, ref));
    }
    CHECK(h.min() == h.lowestEquivalentValue(reference.front()));
    CHECK(h.max() == h.highestEquivalentValue(reference.back()));

    // mean/stddev are defined on the slots' median equivalent values: recompute them from
    // the values themselves, and bound the distance to the exact mean: a value moves by at
    // most half its slot to the median, and a slot is at most 10^-sigfigs of its value
    // (below subBucketHalfCount units, a slot is one unit of 2^unitMagnitude <= lowest).
    long double exact_sum = 0;
    long double median_sum = 0;
    long double max_shift_sum = 0;
    const std::int64_t precise_from = std::int64_t{h.subBucketHalfCount()} << h.unitMagnitude();
    double decimal_unit = 1.0;
    for (int i = 0; i < h.significantFigures(); ++i) {
        decimal_unit *= 10.0;
    }
    std::int64_t promise_broken = 0;
    for (std::int64_t v : reference) {
        const std::int64_t size = h.sizeOfEquivalentValueRange(v);
        exact_sum += static_cast<long double>(v);
        median_sum += static_cast<long double>(h.medianEquivalentValue(v));
        max_shift_sum += static_cast<long double>(size / 2);
        const bool promised = v >= precise_from ? static_cast<double>(size) * decimal_unit <= static_cast<double>(v)
                                                : size == (std::int64_t{1} << h.unitMagnitude());
        promise_broken += promised ? 0 : 1;
    }
    CHECK(promise_broken == 0);
    const auto count = static_cast<long double>(n);
    const double exact_mean = static_cast<double>(exact_sum / count);
    const double median_mean = static_cast<double>(median_sum / count);
    const double max_shift = static_cast<double>(max_shift_sum / count);
    // Room for the histogram's double arithmetic: N additions of relative error 2^-53.
    const double rounding = 1e-12 * std::abs(exact_mean) + 1e-9;
    const double mean = h.mean();
    INFO("mean=" << mean << " exact=" << exact_mean << " from medians=" << median_mean << " max shift=" << max_shift);
    CHECK(std::abs(mean - median_mean) <= 1e-12 * median_mean + 1e-9);
    CHECK(std::abs(mean - exact_mean) <= max_shift + rounding);
    CHECK(std::abs(mean - exact_mean) <=
          exact_mean / decimal_unit / 2.0 + static_cast<double>(std::int64_t{1} << h.unitMagnitude()) / 2.0 + rounding);

    long double sq = 0;
    for (std::int64_t v : reference) {
        const long double d = static_cast<long double>(h.medianEquivalentValue(v)) - static_cast<long double>(median_mean);
        sq += d * d;
    }
    const double median_sd = static_cast<double>(std::sqrt(sq / count));
    // The histogram's mean carries a rounding error relative to the mean, not to the spread.
    CHECK(std::abs(h.stddev() - median_sd) <= 1e-9 * (median_sd + median_mean) + 1e-9);
}

// Records every value; returns how many were refused (each assertion per value would cost
// more than the recording).
std::int64_t recordAll(HdrHistogram& h, const std::vector<std::int64_t>& values) {
    std::int64_t refused = 0;
    for (std::int64_t v : values) {
        refused += h.record(v) ? 0 : 1;
    }
    return refused;
}

using Generator = std::function<std::vector<std::int64_t>(const HdrHistogram&, Draw&)>;

struct Distribution {
    const char* name;
    Generator generate;
};

// The distributions every configuration is tested with; all values stay within highest.
std::vector<Distribution> propertyDistributions() {
    constexpr std::size_t kN = 20'000;
    return {
        {"uniform 0..5000",
         [](const HdrHistogram& h, Draw& d) {
             std::vector<std::int64_t> v(kN);
             for (auto& x : v) {
                 x = d.between(0, std::min<std::int64_t>(5000, h.highestTrackableValue()));
             }
             return v;
         }},
        {"uniform narrow around 1 s",
         [](const HdrHistogram& h, Draw& d) {
             std::vector<std::int64_t> v(kN);
             for (auto& x : v) {
                 x = std::min(h.highestTrackableValue(), d.between(1'000'000, 1'003'000));
             }
             return v;
         }},
        {"uniform 0..highest",
         [](const HdrHistogram& h, Draw& d) {
             std::vector<std::int64_t> v(kN);
             for (auto& x : v) {
                 x = d.between(0, h.highestTrackableValue());
             }
             return v;
         }},
        {"log-normal around 20 ms",
         [](const HdrHistogram& h, Draw& d) {
             std::vector<std::int64_t> v(kN);
             for (auto& x : v) {
                 const double sample = std::exp(std::log(20'000.0) + 1.5 * d.normal());
                 x = std::clamp<std::int64_t>(std::llround(sample), 0, h.highestTrackableValue());
             }
             return v;
         }},
        {"bimodal 200 us and 2 s",
         [](const HdrHistogram& h, Draw& d) {
             std::vector<std::int64_t> v(kN);
             for (auto& x : v) {
                 const double sample =
                     d.unit() < 0.9 ? 200.0 + 20.0 * d.normal() : 2'000'000.0 + 100'000.0 * d.normal();
                 x = std::clamp<std::int64_t>(std::llround(sample), 0, h.highestTrackableValue());
             }
             return v;
         }},
        {"constant",
         [](const HdrHistogram& h, Draw& d) {
             return std::vector<std::int64_t>(kN, d.logUniform(1, h.highestTrackableValue()));
         }},
        {"bucket and sub-bucket edges", [](const HdrHistogram& h, Draw& d) { return bucketEdgeValues(h, d); }},
        {"single sample",
         [](const HdrHistogram& h, Draw& d) {
             return std::vector<std::int64_t>{d.logUniform(1, h.highestTrackableValue())};
         }},
        {"empty", [](const HdrHistogram&, Draw&) { return std::vector<std::int64_t>{}; }},
    };
}

// Exact comparison of two histograms' counts at every index.
void checkSameCounts(const HdrHistogram& x, const HdrHistogram& y) {
    REQUIRE(x.countsLength() == y.countsLength());
    std::int64_t differing = 0;
    std::int32_t first = -1;
    for (std::int32_t i = 0; i < x.countsLength(); ++i) {
        if (x.countAtIndex(i) != y.countAtIndex(i)) {
            first = first < 0 ? i : first;
            ++differing;
        }
    }
    INFO("first differing index " << first);
    CHECK(differing == 0);
    CHECK(x.totalCount() == y.totalCount());
    CHECK(x.overflowCount() == y.overflowCount());
    CHECK(x.min() == y.min());
    CHECK(x.max() == y.max());
}

// The regular layouts: 1 h in microseconds, but 10 s at five significant figures, whose
// 2M-slot array for 1 h would dominate the runtime (every query scans slots).
std::vector<Config> regularConfigs() {
    std::vector<Config> configs;
    for (int sigfigs = 1; sigfigs <= 5; ++sigfigs) {
        for (std::int64_t lowest : {std::int64_t{1}, std::int64_t{1000}}) {
            configs.push_back({lowest, sigfigs == 5 ? 10'000'000 : kHour, sigfigs});
        }
    }
    return configs;
}

}  // namespace

TEST_CASE("hdr properties hold over many distributions and layouts", "[store][hdr][hdr-props]") {
    const auto distributions = propertyDistributions();
    std::uint64_t seed = 1000;
    for (const Config& c : regularConfigs()) {
        for (const Distribution& dist : distributions) {
            ++seed;
            INFO(describe(c) << " distribution=" << dist.name << " seed=" << seed);
            Draw draw(seed);
            HdrHistogram h(c.lowest, c.highest, c.sigfigs);
            const std::vector<std::int64_t> data = dist.generate(h, draw);
            REQUIRE(recordAll(h, data) == 0);
            CHECK(h.overflowCount() == 0);
            checkQueriesAgainstReference(h, data, draw);
        }
    }
}

TEST_CASE("hdr properties hold over huge ranges", "[store][hdr][hdr-props]") {
    std::vector<Config> configs;
    for (int sigfigs = 1; sigfigs <= 4; ++sigfigs) {
        for (std::int64_t lowest : {std::int64_t{1}, std::int64_t{1000}}) {
            for (std::int64_t highest : {std::int64_t{1} << 62, kInt64Max / 2, kInt64Max}) {
                configs.push_back({lowest, highest, sigfigs});
            }
        }
    }
    // Five figures over 2^62 is a 6M-slot array that every query scans: two of them, and
    // fewer random percentiles.
    configs.push_back({1, std::int64_t{1} << 62, 5});
    configs.push_back({1000, kInt64Max / 2, 5});
    std::uint64_t seed = 2000;
    for (const Config& c : configs) {
        ++seed;
        INFO(describe(c) << " seed=" << seed);
        Draw draw(seed);
        HdrHistogram h(c.lowest, c.highest, c.sigfigs);
        // Spread over every binary order of magnitude, with both ends present.
        std::vector<std::int64_t> data = {0, 1, c.lowest, c.highest, c.highest};
        for (int i = 0; i < 5000; ++i) {
            data.push_back(draw.logUniform(1, c.highest));
        }
        REQUIRE(recordAll(h, data) == 0);
        CHECK(h.overflowCount() == 0);
        CHECK(h.countsIndexFor(c.highest) < h.countsLength());
        checkQueriesAgainstReference(h, data, draw, c.sigfigs == 5 ? 2 : 12);
        CHECK(h.max() == h.highestEquivalentValue(c.highest));
        CHECK(h.valueAtPercentile(100) == h.highestEquivalentValue(c.highest));
    }
}

TEST_CASE("hdr values above highest are clamped and counted", "[store][hdr][hdr-props]") {
    std::uint64_t seed = 3000;
    for (int sigfigs = 1; sigfigs <= 5; ++sigfigs) {
        for (std::int64_t lowest : {std::int64_t{1}, std::int64_t{1000}}) {
            ++seed;
            Draw draw(seed);
            const Config c{lowest, lowest * draw.between(2, 10'000'000), sigfigs};
            INFO(describe(c) << " seed=" << seed);
            HdrHistogram h(c.lowest, c.highest, c.sigfigs);
            std::vector<std::int64_t> clamped;
            std::int64_t above = 0;
            std::int64_t refused = 0;
            auto add = [&](std::int64_t v) {
                refused += h.record(v) ? 0 : 1;
                clamped.push_back(std::min(v, c.highest));
                above += v > c.highest ? 1 : 0;
            };
            add(c.highest);
            add(c.highest + 1);
            add(kInt64Max);
            for (int i = 0; i < 10'000; ++i) {
                add(draw.unit() < 0.8 ? draw.between(0, c.highest) : draw.logUniform(c.highest + 1, kInt64Max));
            }
            REQUIRE(refused == 0);
            CHECK(h.overflowCount() == above);
            CHECK(h.max() == h.highestEquivalentValue(c.highest));
            CHECK(h.valueAtPercentile(100) == h.highestEquivalentValue(c.highest));
            const auto at_top =
                std::count_if(clamped.begin(), clamped.end(), [&h, &c](std::int64_t v) {
                    return h.countsIndexFor(v) == h.countsIndexFor(c.highest);
                });
            CHECK(h.countAtIndex(h.countsIndexFor(c.highest)) == at_top);
            checkQueriesAgainstReference(h, clamped, draw);
        }
    }
}

TEST_CASE("hdr add and subtract are exact over random histograms", "[store][hdr][hdr-props]") {
    const auto distributions = propertyDistributions();
    std::uint64_t seed = 4000;
    std::vector<Config> configs = regularConfigs();
    configs.push_back({1, std::int64_t{1} << 62, 3});
    configs.push_back({1000, kInt64Max, 2});
    for (const Config& c : configs) {
        for (int round = 0; round < 3; ++round) {
            ++seed;
            Draw draw(seed);
            const Distribution& da = distributions[static_cast<std::size_t>(draw.between(0, 8))];
            const Distribution& db = distributions[static_cast<std::size_t>(draw.between(0, 8))];
            INFO(describe(c) << " a=" << da.name << " b=" << db.name << " seed=" << seed);
            HdrHistogram a(c.lowest, c.highest, c.sigfigs);
            HdrHistogram b(c.lowest, c.highest, c.sigfigs);
            HdrHistogram both(c.lowest, c.highest, c.sigfigs);
            std::vector<std::int64_t> va = da.generate(a, draw);
            std::vector<std::int64_t> vb = db.generate(b, draw);
            // Some overflows on either side, so overflowCount takes part.
            if (c.highest < kInt64Max) {
                for (std::int64_t k = draw.between(0, 5); k > 0; --k) {
                    va.push_back(draw.between(c.highest + 1, kInt64Max));
                }
                for (std::int64_t k = draw.between(0, 5); k > 0; --k) {
                    vb.push_back(draw.between(c.highest + 1, kInt64Max));
                }
            }
            REQUIRE(recordAll(a, va) == 0);
            REQUIRE(recordAll(b, vb) == 0);
            REQUIRE(recordAll(both, va) == 0);
            REQUIRE(recordAll(both, vb) == 0);

            HdrHistogram merged = a;
            merged.add(b);
            checkSameCounts(merged, both);

            HdrHistogram reversed = b;
            reversed.add(a);
            checkSameCounts(reversed, both);

            merged.subtract(b);
            checkSameCounts(merged, a);
            CHECK(merged.mean() == a.mean());
            CHECK(merged.valueAtPercentile(99.9) == a.valueAtPercentile(99.9));

            reversed.subtract(a);
            checkSameCounts(reversed, b);
        }
    }
}

TEST_CASE("hdr counts are in memory only where written; copies and moves keep every count", "[store][hdr]") {
    HdrHistogram h(1, 3'600'000'000, 3);
    const std::size_t counts_bytes = static_cast<std::size_t>(h.countsLength()) * sizeof(std::int64_t);
    REQUIRE(counts_bytes > 64 * 1024);  // the mapped case
    constexpr bool mapped = rollguard::agent::detail::ZeroedCounts::kMapsLargeArrays;  // not under ASan
    // Fresh: not one page of counts in memory (the index and the object are).
    if (mapped) {
        CHECK(h.residentBytes() < h.memoryBytes() - counts_bytes + 4096);
    }
    std::mt19937_64 rng(5);
    std::lognormal_distribution<double> latency(std::log(20'000.0), 0.5);
    for (int i = 0; i < 10'000; ++i) {
        h.record(std::llround(latency(rng)));
    }
    h.record(3'000'000'000);  // one far count: one more page
    const std::size_t written = h.residentBytes();
    CHECK(written > h.memoryBytes() - counts_bytes);
    if (mapped) {
        CHECK(written < h.memoryBytes() / 2);
    }

    const HdrHistogram copy(h);  // NOLINT(performance-unnecessary-copy-initialization)
    CHECK(copy.residentBytes() <= written);
    for (std::int32_t i = 0; i < h.countsLength(); ++i) {
        REQUIRE(copy.countAtIndex(i) == h.countAtIndex(i));
    }
    HdrHistogram assigned(1, 3'600'000'000, 3);
    assigned.record(7);
    assigned = copy;
    HdrHistogram moved(std::move(assigned));
    for (std::int32_t i = 0; i < h.countsLength(); ++i) {
        REQUIRE(moved.countAtIndex(i) == h.countAtIndex(i));
    }
    CHECK(moved.totalCount() == h.totalCount());
    CHECK(moved.valueAtPercentile(99.0) == h.valueAtPercentile(99.0));
}
