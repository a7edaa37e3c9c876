#pragma once

// Test doubles for the rules engine's statistics views (header-only, unit tests only).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "rollguard/rules/stats.h"

namespace rollguard::testing {

/// A latency distribution given as (value seconds, count) buckets, ascending.
class BucketLatency final : public rules::LatencyView {
public:
    std::vector<std::pair<double, std::int64_t>> buckets;

    BucketLatency() = default;
    explicit BucketLatency(std::vector<std::pair<double, std::int64_t>> b) : buckets(std::move(b)) {
        std::sort(buckets.begin(), buckets.end());
    }

    std::int64_t count() const override {
        std::int64_t n = 0;
        for (const auto& [v, c] : buckets) {
            n += c;
        }
        return n;
    }
    double quantileSeconds(double q) const override {
        const auto n = count();
        const auto rank = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(q * static_cast<double>(n))));
        std::int64_t seen = 0;
        for (const auto& [v, c] : buckets) {
            seen += c;
            if (seen >= rank) {
                return v;
            }
        }
        return buckets.empty() ? 0.0 : buckets.back().first;
    }
    double meanSeconds() const override {
        double s = 0.0;
        for (const auto& [v, c] : buckets) {
            s += v * static_cast<double>(c);
        }
        return s / static_cast<double>(count());
    }
    double minSeconds() const override { return buckets.front().first; }
    double maxSeconds() const override { return buckets.back().first; }
    double stddevSeconds() const override {
        const double m = meanSeconds();
        double s = 0.0;
        for (const auto& [v, c] : buckets) {
            s += (v - m) * (v - m) * static_cast<double>(c);
        }
        return std::sqrt(s / static_cast<double>(count()));
    }
    void forEachBucket(const std::function<void(double, std::int64_t)>& fn) const override {
        for (const auto& [v, c] : buckets) {
            fn(v, c);
        }
    }
};

/// A value series' points: (seconds since window start, value).
class FixedPoints final : public rules::PointsView {
public:
    std::vector<std::pair<double, double>> points;
    void forEach(const std::function<void(double, double)>& fn) const override {
        for (const auto& [t, v] : points) {
            fn(t, v);
        }
    }
};

}  // namespace rollguard::testing
