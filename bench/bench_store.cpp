// The store's costs: one record, a p99 over a 10-minute window, the memory of an hour.
// Figures are printed, never asserted.

#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "rollguard/agent/hdr_histogram.h"
#include "rollguard/agent/sliding_window.h"

using rollguard::agent::HdrHistogram;
using rollguard::agent::HistogramSettings;
using rollguard::agent::IntervalRecorder;
using rollguard::agent::IntervalStats;
using rollguard::agent::SlidingWindow;
using rollguard::agent::WindowStats;
using rollguard::rules::TimePoint;

namespace {

constexpr int kPerSecond = 1000;
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

// Fills `seconds` one-second slots with kPerSecond values each, ending at kStart + seconds - 1.
void fill(SlidingWindow& window, int seconds, std::uint64_t seed) {
    const std::vector<std::int64_t> values = latencies(static_cast<std::size_t>(seconds) * kPerSecond, seed);
    IntervalStats interval(window.settings());
    for (int s = 0; s < seconds; ++s) {
        interval.reset();
        for (int i = 0; i < kPerSecond; ++i) {
            interval.latency.record(values[static_cast<std::size_t>(s) * kPerSecond + static_cast<std::size_t>(i)]);
        }
        interval.events = kPerSecond;
        window.add(kStart + std::chrono::seconds{s}, interval);
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

void BM_WindowP99Over10Minutes(benchmark::State& state) {
    SlidingWindow window(std::chrono::seconds{1}, std::chrono::minutes{10});
    fill(window, 600, 3);
    const TimePoint now = kStart + std::chrono::seconds{599};
    for (auto _ : state) {
        const WindowStats stats = window.query(now, std::chrono::minutes{10});
        benchmark::DoNotOptimize(stats.latency.valueAtPercentile(99.0));
    }
    // Read outside the loop: a value passed through DoNotOptimize(T&) is not reliable
    // afterwards under every compiler and sanitizer combination.
    const std::int64_t p99 = window.query(now, std::chrono::minutes{10}).latency.valueAtPercentile(99.0);
    state.counters["slots"] = static_cast<double>(window.slotCount());
    state.counters["p99_us"] = static_cast<double>(p99);
    state.counters["window_bytes"] = static_cast<double>(window.memoryBytes());
}
BENCHMARK(BM_WindowP99Over10Minutes)->Unit(benchmark::kMicrosecond);

// Steady state of a 1-hour window: each iteration adds one more second (1000 values)
// and expires the oldest; the counters give the memory of the full hour.
void BM_WindowHourAddAndMemory(benchmark::State& state) {
    SlidingWindow window(std::chrono::seconds{1}, std::chrono::hours{1});
    fill(window, 3600, 4);
    const std::vector<std::int64_t> values = latencies(64 * kPerSecond, 5);
    std::vector<IntervalStats> intervals;
    for (int k = 0; k < 64; ++k) {
        IntervalStats interval(window.settings());
        for (int i = 0; i < kPerSecond; ++i) {
            interval.latency.record(values[static_cast<std::size_t>(k) * kPerSecond + static_cast<std::size_t>(i)]);
        }
        interval.events = kPerSecond;
        intervals.push_back(std::move(interval));
    }
    int second = 3600;
    for (auto _ : state) {
        window.add(kStart + std::chrono::seconds{second}, intervals[static_cast<std::size_t>(second) % intervals.size()]);
        ++second;
    }
    const HdrHistogram dense(1, 3'600'000'000, 3);
    state.counters["slots"] = static_cast<double>(window.slotCount());
    state.counters["hour_bytes"] = static_cast<double>(window.memoryBytes());
    state.counters["bytes_per_slot"] = static_cast<double>(window.memoryBytes()) / static_cast<double>(window.slotCount());
    state.counters["dense_hist_bytes"] = static_cast<double>(dense.memoryBytes());
}
BENCHMARK(BM_WindowHourAddAndMemory)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
