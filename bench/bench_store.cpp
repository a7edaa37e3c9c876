// The store's costs: one record, a p99 over a 10-minute window, a slot advance, and the
// memory of a series with a 5-minute and a 1-hour window. Figures are printed, never
// asserted.

#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "rollguard/agent/hdr_histogram.h"
#include "rollguard/agent/sliding_window.h"

using rollguard::agent::HdrHistogram;
using rollguard::agent::HistogramSettings;
using rollguard::agent::IntervalRecorder;
using rollguard::agent::IntervalStats;
using rollguard::agent::Series;
using rollguard::agent::WindowHandle;
using rollguard::rules::TimePoint;

namespace {

constexpr std::size_t kPerSecond = 1000;
const TimePoint kStart{std::chrono::seconds{1'700'000'000}};

// Web-like latencies in microseconds: median 20 ms, long right tail.
std::vector<std::int64_t> latencies(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::lognormal_distribution<double> dist(std::log(20'000.0), 0.8);
    std::vector<std::int64_t> out(n);
    for (auto& v : out) {
        v = std::llround(dist(rng));
    }
    return out;
}

IntervalStats secondOf(const std::vector<std::int64_t>& values, std::size_t second, const HistogramSettings& settings) {
    IntervalStats interval(settings);
    for (std::size_t i = 0; i < kPerSecond; ++i) {
        interval.latency.record(values[(second * kPerSecond + i) % values.size()]);
    }
    interval.events = kPerSecond;
    return interval;
}

// Feeds `seconds` seconds of kPerSecond log-normal values, one interval a second, ending
// at kStart + seconds - 1.
void fill(Series& series, int seconds, std::uint64_t seed) {
    const std::vector<std::int64_t> values = latencies(static_cast<std::size_t>(seconds) * kPerSecond, seed);
    for (int s = 0; s < seconds; ++s) {
        series.add(kStart + std::chrono::seconds{s}, secondOf(values, static_cast<std::size_t>(s), series.settings()));
    }
}

void BM_HdrRecord(benchmark::State& state) {
    HdrHistogram h(1, 3'600'000'000, 3);
    const std::vector<std::int64_t> values = latencies(1 << 16, 1);
    std::size_t i = 0;
    for (auto _ : state) {
        h.record(values[i & 0xFFFF]);
        ++i;
    }
    benchmark::DoNotOptimize(h.totalCount());
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HdrRecord);

void BM_RecorderRecord(benchmark::State& state) {
    IntervalRecorder recorder;
    const std::vector<std::int64_t> values = latencies(1 << 16, 2);
    std::size_t i = 0;
    for (auto _ : state) {
        recorder.record(static_cast<double>(values[i & 0xFFFF]) / 1e6, (i & 63) == 0);
        ++i;
    }
    benchmark::DoNotOptimize(recorder.take().events);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RecorderRecord);

// The p99 of a full 10-minute window: the aggregate is maintained as time advances, so
// a query is one walk of the aggregate histogram.
void BM_WindowP99Over10Minutes(benchmark::State& state) {
    Series series;
    const WindowHandle w = series.addWindow(std::chrono::minutes{10});
    fill(series, 600, 3);
    for (auto _ : state) {
        benchmark::DoNotOptimize(series.window(w).quantileSeconds(0.99));
    }
    state.counters["p99_ms"] = series.window(w).quantileSeconds(0.99) * 1e3;
    state.counters["samples"] = static_cast<double>(series.window(w).count());
    state.counters["slots"] = static_cast<double>(series.sealedSlots());
}
BENCHMARK(BM_WindowP99Over10Minutes)->Unit(benchmark::kMicrosecond);

// Steady state of a series with a 5-minute and a 1-hour window: each iteration is one
// tick adding one second (1,000 values): a slot sealed, the interval added to both
// aggregates, the slots leaving each window subtracted.
void BM_SlotAdvance(benchmark::State& state) {
    Series series;
    series.addWindow(std::chrono::minutes{5});
    series.addWindow(std::chrono::hours{1});
    fill(series, 3600, 4);
    const std::vector<std::int64_t> values = latencies(64 * kPerSecond, 5);
    std::vector<IntervalStats> intervals;
    for (std::size_t k = 0; k < 64; ++k) {
        intervals.push_back(secondOf(values, k, series.settings()));
    }
    int second = 3600;
    for (auto _ : state) {
        series.add(kStart + std::chrono::seconds{second}, intervals[static_cast<std::size_t>(second) % intervals.size()]);
        ++second;
    }
    state.counters["series_bytes"] = static_cast<double>(series.memoryBytes());
}
BENCHMARK(BM_SlotAdvance)->Unit(benchmark::kMicrosecond);

// Memory of one series with a 5-minute window (1 s slots) and a 1-hour window (15 s
// slots), 3 significant figures, after an hour of 1,000 log-normal samples a second,
// against the naive layout (one full histogram per 1 s slot).
void BM_SeriesMemoryHour(benchmark::State& state) {
    for (auto _ : state) {
        Series series;
        series.addWindow(std::chrono::minutes{5});
        series.addWindow(std::chrono::hours{1});
        fill(series, 3600, 6);
        const HdrHistogram dense(1, 3'600'000'000, 3);
        state.counters["series_bytes"] = static_cast<double>(series.memoryBytes());
        state.counters["sealed_slots"] = static_cast<double>(series.sealedSlots());
        state.counters["naive_5m_bytes"] = 300.0 * static_cast<double>(dense.memoryBytes());
        state.counters["naive_1h_bytes"] = 3600.0 * static_cast<double>(dense.memoryBytes());
    }
}
BENCHMARK(BM_SeriesMemoryHour)->Unit(benchmark::kMillisecond)->Iterations(1);

// What a checkpoint costs for that series: serializing its slots (the agent writes the
// bytes about once a second while data arrives, and not at all while idle).
void BM_SeriesSerializeHour(benchmark::State& state) {
    Series series;
    series.addWindow(std::chrono::minutes{5});
    series.addWindow(std::chrono::hours{1});
    fill(series, 3600, 7);
    std::size_t bytes = 0;
    for (auto _ : state) {
        const std::string blob = series.serialize();
        bytes = blob.size();
        benchmark::DoNotOptimize(blob.data());
    }
    state.counters["checkpoint_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_SeriesSerializeHour)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
