// Rule evaluation cost: one quantile rule per tick with a precomputed view, 1,000 rules
// per tick, per-group evaluation, and a Mann-Whitney comparison from histogram buckets.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "rollguard/rules/compare.h"
#include "rollguard/rules/engine.h"

namespace {

using namespace std::chrono_literals;
using rollguard::rules::Engine;
using rollguard::rules::EvalInput;
using rollguard::rules::LatencyView;
using rollguard::rules::MetricKind;
using rollguard::rules::RuleSpec;
using rollguard::rules::SeriesStats;
using rollguard::rules::TimePoint;

/// A view whose window aggregate is maintained incrementally elsewhere: answers are O(1).
class PrecomputedView final : public LatencyView {
public:
    std::int64_t count() const override { return 10'000; }
    double quantileSeconds(double q) const override { return q * 0.1; }
    double meanSeconds() const override { return 0.02; }
    double minSeconds() const override { return 0.001; }
    double maxSeconds() const override { return 0.5; }
};

/// 200 geometric buckets, as an HDR window at 2 significant figures would hold.
class BucketView final : public LatencyView {
public:
    explicit BucketView(double scale) {
        for (int k = 0; k < 200; ++k) {
            buckets_.emplace_back(0.001 * std::pow(1.03, k) * scale, 50 + k % 7);
        }
    }
    std::int64_t count() const override { return 0; }
    double quantileSeconds(double) const override { return 0.0; }
    double meanSeconds() const override { return 0.0; }
    double minSeconds() const override { return 0.0; }
    double maxSeconds() const override { return 0.0; }
    void forEachBucket(const std::function<void(double, std::int64_t)>& fn) const override {
        for (const auto& [v, c] : buckets_) {
            fn(v, c);
        }
    }

private:
    std::vector<std::pair<double, std::int64_t>> buckets_;
};

std::vector<RuleSpec> quantileRules(int n) {
    std::vector<RuleSpec> rules;
    for (int i = 0; i < n; ++i) {
        RuleSpec r;
        r.name = "p99-" + std::to_string(i);
        r.source = "app";
        r.metric.kind = MetricKind::Quantile;
        r.metric.quantile = 0.99;
        // Half breach (so states move through pending and firing), half stay healthy.
        r.threshold = i % 2 == 0 ? 0.05 : 0.5;
        r.for_ = 30s;
        r.hooks = {"rollback"};
        rules.push_back(std::move(r));
    }
    return rules;
}

void runTicks(benchmark::State& state, int rules_count) {
    PrecomputedView view;
    Engine engine(quantileRules(rules_count));
    const SeriesStats stats{10'000, 10, 5min, &view};
    TimePoint now{std::chrono::seconds{1'700'000'000}};
    for (auto _ : state) {
        auto transitions = engine.evaluate(now, [&stats](const RuleSpec&) { return stats; });
        benchmark::DoNotOptimize(transitions);
        now += 1s;
    }
    state.counters["rules/tick"] = rules_count;
    state.counters["ns/rule"] = benchmark::Counter(static_cast<double>(rules_count) * static_cast<double>(state.iterations()),
                                                   benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_QuantileRulePerTick(benchmark::State& state) {
    runTicks(state, 1);
}
BENCHMARK(BM_QuantileRulePerTick);

void BM_ThousandRulesPerTick(benchmark::State& state) {
    runTicks(state, 1000);
}
BENCHMARK(BM_ThousandRulesPerTick)->Unit(benchmark::kMicrosecond);

void BM_GroupedRule50Groups(benchmark::State& state) {
    PrecomputedView view;
    auto rules = quantileRules(1);
    rules[0].selection.group_by = {"route"};
    Engine engine(rules);
    std::vector<EvalInput> inputs(50);
    for (int g = 0; g < 50; ++g) {
        inputs[static_cast<std::size_t>(g)].group = "route=/api/" + std::to_string(g);
        inputs[static_cast<std::size_t>(g)].stats = SeriesStats{10'000, 10, 5min, &view};
    }
    TimePoint now{std::chrono::seconds{1'700'000'000}};
    for (auto _ : state) {
        auto e = engine.evaluateGroups(now, [&inputs](const RuleSpec&, std::size_t) { return inputs; });
        benchmark::DoNotOptimize(e);
        now += 1s;
    }
}
BENCHMARK(BM_GroupedRule50Groups)->Unit(benchmark::kMicrosecond);

void BM_MannWhitney200Buckets(benchmark::State& state) {
    BucketView canary(1.1);
    BucketView baseline(1.0);
    rollguard::rules::CompareSpec spec;
    spec.effect = state.range(0) == 0 ? rollguard::rules::EffectKind::MedianRatio
                                      : rollguard::rules::EffectKind::HodgesLehmann;
    for (auto _ : state) {
        auto r = rollguard::rules::mannWhitney(canary, baseline, spec);
        benchmark::DoNotOptimize(r);
    }
}
BENCHMARK(BM_MannWhitney200Buckets)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
