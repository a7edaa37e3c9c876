#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "rollguard/rules/compare.h"
#include "rollguard/rules/selection.h"
#include "rollguard/rules/stats.h"
#include "rules_fakes.h"

using namespace std::chrono_literals;
using rollguard::rules::CompareSpec;
using rollguard::rules::computeMetric;
using rollguard::rules::EffectKind;
using rollguard::rules::GroupTable;
using rollguard::rules::LabelMatcher;
using rollguard::rules::mannWhitney;
using rollguard::rules::MetricKind;
using rollguard::rules::MetricSpec;
using rollguard::rules::Selection;
using rollguard::rules::SeriesStats;
using rollguard::testing::BucketLatency;
using rollguard::testing::FixedPoints;

namespace {

using Strings = std::vector<std::string>;
using Buckets = std::vector<std::pair<double, std::int64_t>>;

MetricSpec metricOf(MetricKind kind) {
    MetricSpec m;
    m.kind = kind;
    return m;
}

/// 50 geometric buckets 10ms * 1.05^k, `count` each, every value multiplied by `scale`.
Buckets geometric(double scale, std::int64_t count) {
    Buckets b;
    for (int k = 0; k < 50; ++k) {
        b.emplace_back(0.010 * std::pow(1.05, k) * scale, count);
    }
    return b;
}

LabelMatcher matcher(std::string label, LabelMatcher::Op op, std::string value) {
    std::string error;
    auto m = LabelMatcher::make(std::move(label), op, std::move(value), error);
    REQUIRE(m != nullptr);
    return *m;
}

}  // namespace

TEST_CASE("value metrics: gauge, increase and rate over a value series", "[rules][metrics]") {
    SeriesStats s;
    s.window = 60s;
    s.value_count = 4;
    s.value_sum = 120.0;
    s.last_value = 0.4;

    auto v = computeMetric(metricOf(MetricKind::Value), s);
    CHECK(v.value == 0.4);
    CHECK(v.samples == 4);
    CHECK(computeMetric(metricOf(MetricKind::Increase), s).value == 120.0);
    v = computeMetric(metricOf(MetricKind::Rate), s);
    CHECK(v.value == 2.0);
    CHECK(v.samples == 4);

    SeriesStats empty;
    empty.window = 60s;
    v = computeMetric(metricOf(MetricKind::Value), empty);
    CHECK_FALSE(v.value.has_value());
    CHECK(v.samples == 0);
}

TEST_CASE("growth is the least-squares slope per hour over the mean", "[rules][metrics]") {
    FixedPoints pts;
    // 100 -> 110 over one hour in four points: slope 10/h, mean 105.
    pts.points = {{0.0, 100.0}, {1200.0, 100.0 + 10.0 / 3.0}, {2400.0, 100.0 + 20.0 / 3.0}, {3600.0, 110.0}};
    SeriesStats s;
    s.window = 1h;
    s.value_count = 4;
    s.points = &pts;
    auto v = computeMetric(metricOf(MetricKind::Growth), s);
    REQUIRE(v.value.has_value());
    CHECK(*v.value == Approx(10.0 / 105.0).epsilon(1e-12));
    CHECK(v.samples == 4);

    pts.points = {{5.0, 100.0}};
    s.value_count = 1;
    CHECK_FALSE(computeMetric(metricOf(MetricKind::Growth), s).value.has_value());
    s.points = nullptr;
    CHECK_FALSE(computeMetric(metricOf(MetricKind::Growth), s).value.has_value());
}

TEST_CASE("stddev and the ratio of two metrics", "[rules][metrics]") {
    BucketLatency lat({{0.010, 50}, {0.030, 50}});
    SeriesStats s{100, 0, 60s, &lat};
    auto v = computeMetric(metricOf(MetricKind::Stddev), s);
    CHECK(*v.value == Approx(0.010));
    CHECK(v.samples == 100);

    MetricSpec ratio = metricOf(MetricKind::Ratio);
    MetricSpec p99 = metricOf(MetricKind::Quantile);
    p99.quantile = 0.99;
    MetricSpec p50 = metricOf(MetricKind::Quantile);
    p50.quantile = 0.5;
    ratio.operands = {p99, p50};
    v = computeMetric(ratio, s);
    CHECK(*v.value == Approx(3.0));
    CHECK(v.samples == 100);

    // A zero denominator is no data, not infinity.
    MetricSpec errors_per_event = metricOf(MetricKind::Ratio);
    errors_per_event.operands = {metricOf(MetricKind::Count), metricOf(MetricKind::Count)};
    SeriesStats none{0, 0, 60s, nullptr};
    CHECK_FALSE(computeMetric(errors_per_event, none).value.has_value());
}

TEST_CASE("label matchers: =, !=, =~ and !~ anchored like Prometheus", "[rules][selection]") {
    const Strings names{"route", "variant"};
    CHECK(matcher("variant", LabelMatcher::Op::Equal, "canary").matches("canary"));
    CHECK_FALSE(matcher("variant", LabelMatcher::Op::Equal, "canary").matches("canary2"));
    CHECK(matcher("variant", LabelMatcher::Op::NotEqual, "stable").matches("canary"));
    const LabelMatcher api = matcher("route", LabelMatcher::Op::Regex, "/api/.*");
    CHECK(api.matches("/api/v1"));
    CHECK_FALSE(api.matches("/web/api/v1"));
    // Anchored: a bare prefix does not match a longer value.
    CHECK_FALSE(matcher("route", LabelMatcher::Op::Regex, "/api/").matches("/api/v1"));
    CHECK(matcher("route", LabelMatcher::Op::Regex, "a|b").matches("b"));
    CHECK_FALSE(matcher("route", LabelMatcher::Op::Regex, "a|b").matches("ab"));
    CHECK(matcher("route", LabelMatcher::Op::NotRegex, "/health.*").matches("/api"));
    CHECK_FALSE(matcher("route", LabelMatcher::Op::NotRegex, "/health.*").matches("/healthz"));

    std::string error;
    CHECK(LabelMatcher::make("route", LabelMatcher::Op::Regex, "([", error) == nullptr);
    CHECK_FALSE(error.empty());

    Selection sel;
    sel.matchers = {matcher("variant", LabelMatcher::Op::Equal, "canary"),
                    matcher("route", LabelMatcher::Op::Regex, "/api/.*")};
    sel.group_by = {"route", "variant"};
    CHECK(sel.matches(names, {"/api/a", "canary"}));
    CHECK_FALSE(sel.matches(names, {"/api/a", "stable"}));
    // A missing label is "": it fails `= canary` and passes `!= stable`.
    CHECK_FALSE(sel.matches({"route"}, {"/api/a"}));
    CHECK(sel.groupKey(names, {"/api/a", "canary"}) == "route=/api/a,variant=canary");
    CHECK(sel.groupKey({"variant"}, {"canary"}) == "route=,variant=canary");
    Selection ungrouped;
    CHECK(ungrouped.groupKey(names, {"/api/a", "canary"}).empty());
}

TEST_CASE("label matchers: RE2 syntax, (?i), anchoring and the error text", "[rules][selection]") {
    // (?i) is RE2/Prometheus syntax; std::regex (ECMAScript) refused it.
    const LabelMatcher canary = matcher("variant", LabelMatcher::Op::Regex, "(?i)canary");
    CHECK(canary.matches("CANARY"));
    CHECK(canary.matches("Canary"));
    CHECK_FALSE(canary.matches("canary-2"));  // still anchored
    CHECK_FALSE(matcher("variant", LabelMatcher::Op::NotRegex, "(?i)canary").matches("CaNaRy"));
    // Anchored at both ends even when the pattern has its own anchors or an alternation.
    CHECK(matcher("route", LabelMatcher::Op::Regex, "^/api$").matches("/api"));
    CHECK_FALSE(matcher("route", LabelMatcher::Op::Regex, "/a|/b").matches("/a/b"));
    CHECK(matcher("route", LabelMatcher::Op::Regex, "").matches(""));
    CHECK_FALSE(matcher("route", LabelMatcher::Op::Regex, "").matches("x"));
    // RE2-only: Perl/POSIX classes and \pL Unicode classes ...
    CHECK(matcher("host", LabelMatcher::Op::Regex, "[[:alpha:]]+-\\d+").matches("web-12"));
    CHECK(matcher("host", LabelMatcher::Op::Regex, "\\pL+").matches("h\xc3\xb6st"));
    // ... and `.` matches a newline, as in Prometheus 3.
    CHECK(matcher("msg", LabelMatcher::Op::Regex, "a.b").matches("a\nb"));
    // Backreferences and lookaheads are not RE2 (nor Prometheus): a config error with
    // RE2's own message.
    std::string error;
    CHECK(LabelMatcher::make("route", LabelMatcher::Op::Regex, "(a)\\1", error) == nullptr);
    CHECK(error.find("invalid escape sequence") != std::string::npos);
    error.clear();
    CHECK(LabelMatcher::make("route", LabelMatcher::Op::Regex, "(?=a)", error) == nullptr);
    CHECK(error.find("invalid perl operator") != std::string::npos);
    error.clear();
    CHECK(LabelMatcher::make("route", LabelMatcher::Op::Regex, "([", error) == nullptr);
    CHECK(error.find("missing ]") != std::string::npos);
}

TEST_CASE("label matchers: a catastrophic-backtracking pattern finishes (RE2 is linear)", "[rules][selection]") {
    // With std::regex (a backtracking matcher) `(a+)+$` against a run of 'a's ending in
    // '!' tries every split of the run: time exponential in its length, minutes to years
    // at these sizes (and a stack overflow in libstdc++'s recursive matcher). RE2 runs in
    // time linear in the value. No timing assertion: finishing is the test.
    const std::string evil = std::string(34, 'a') + "!";
    const auto started = std::chrono::steady_clock::now();
    CHECK_FALSE(matcher("route", LabelMatcher::Op::Regex, "(a+)+$").matches(evil));
    CHECK(matcher("route", LabelMatcher::Op::NotRegex, "(a+)+$").matches(evil));
    CHECK_FALSE(matcher("route", LabelMatcher::Op::Regex, "(a|aa)+").matches(std::string(5000, 'a') + "!"));
    CHECK(matcher("route", LabelMatcher::Op::Regex, "(a|aa)+").matches(std::string(5000, 'a')));
    const auto took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started);
    SUCCEED("RE2 took " << took.count() << " us");
}

TEST_CASE("GroupTable caps the groups and routes the rest to __other__", "[rules][selection]") {
    Selection sel;
    sel.group_by = {"route"};
    sel.max_groups = 2;
    sel.matchers = {matcher("route", LabelMatcher::Op::NotEqual, "/healthz")};
    GroupTable table(sel);
    const Strings names{"route"};
    CHECK(table.route(names, {"/a"}).group == "route=/a");
    CHECK(table.route(names, {"/b"}).group == "route=/b");
    CHECK(table.route(names, {"/a"}).group == "route=/a");
    CHECK(table.route(names, {"/c"}).group == "__other__");
    CHECK(table.route(names, {"/d"}).group == "__other__");
    CHECK_FALSE(table.route(names, {"/healthz"}).matched);
    CHECK(table.groups() == 2);
    CHECK(table.overflowed() == 2);
}

TEST_CASE("Mann-Whitney U from buckets: exact U, ties and variance on a small case", "[rules][compare]") {
    // canary {1, 2}, baseline {2, 3}: U = 0.5 (the tied pair counts 1/2); one tie group
    // of 2, so var = 4/12 * (5 - 6/12) = 1.5.
    BucketLatency canary({{1.0, 1}, {2.0, 1}});
    BucketLatency baseline({{2.0, 1}, {3.0, 1}});
    const auto r = mannWhitney(canary, baseline, CompareSpec{});
    REQUIRE(r.valid);
    CHECK(r.u == 0.5);
    CHECK(r.z == Approx((0.5 - 2.0 - 0.5) / std::sqrt(1.5)));
    CHECK(r.p_value > 0.9);
    CHECK_FALSE(r.fails);
    CHECK(r.n_canary == 2);
    CHECK(r.n_baseline == 2);
    // Pair differences -2, -1, -1, 0: Hodges-Lehmann shift -1 over the baseline median 2.
    CompareSpec hl;
    hl.effect = EffectKind::HodgesLehmann;
    CHECK(mannWhitney(canary, baseline, hl).effect == Approx(-0.5));
    CHECK(r.effect == Approx(-0.5));  // medians 1 and 2 (lower medians)

    BucketLatency empty;
    CHECK_FALSE(mannWhitney(empty, baseline, CompareSpec{}).valid);
    // Everything in one tie group: no evidence.
    BucketLatency same({{0.1, 100}});
    const auto tied = mannWhitney(same, same, CompareSpec{});
    CHECK(tied.p_value == 1.0);
    CHECK_FALSE(tied.fails);
}

TEST_CASE("Mann-Whitney on known distributions", "[rules][compare]") {
    CompareSpec spec;  // 98% confidence, +10% allowed
    BucketLatency baseline(geometric(1.0, 200));

    SECTION("equal distributions pass") {
        BucketLatency canary(geometric(1.0, 200));
        const auto r = mannWhitney(canary, baseline, spec);
        CHECK(r.u == Approx(200.0 * 200.0 * 50 * 50 / 2.0));
        CHECK(r.p_value > 0.5);
        CHECK(r.effect == 0.0);
        CHECK_FALSE(r.fails);
    }
    SECTION("shifted by 20% fails at 98%") {
        BucketLatency canary(geometric(1.2, 200));
        const auto r = mannWhitney(canary, baseline, spec);
        CHECK(r.p_value < 1e-6);
        CHECK(r.effect == Approx(0.2));
        CHECK(r.fails);
        spec.effect = EffectKind::HodgesLehmann;
        const auto hl = mannWhitney(canary, baseline, spec);
        CHECK(hl.effect > 0.10);
        CHECK(hl.fails);
    }
    SECTION("significant but a tiny effect passes") {
        BucketLatency canary(geometric(1.02, 200));
        const auto r = mannWhitney(canary, baseline, spec);
        // U = 200*200 * sum(k+1) = 51e6 against a mean of 50e6: z ~ 2.45.
        CHECK(r.u == Approx(51e6));
        CHECK(r.p_value < 0.02);
        CHECK(r.effect == Approx(0.02));
        CHECK_FALSE(r.fails);
        spec.max_increase = 0.01;
        CHECK(mannWhitney(canary, baseline, spec).fails);
    }
    SECTION("small samples: complete separation of 3 vs 3 is not significant at 98%") {
        BucketLatency small_base({{0.010, 1}, {0.011, 1}, {0.012, 1}});
        BucketLatency small_canary({{0.020, 1}, {0.021, 1}, {0.022, 1}});
        const auto r = mannWhitney(small_canary, small_base, spec);
        CHECK(r.u == 9.0);
        CHECK(r.p_value == Approx(0.5 * std::erfc((4.0 / std::sqrt(5.25)) / std::sqrt(2.0))));
        CHECK(r.p_value > 0.02);
        CHECK_FALSE(r.fails);
        // 5 vs 5 fully separated is (exact p = 1/252).
        BucketLatency base5({{0.010, 1}, {0.011, 1}, {0.012, 1}, {0.013, 1}, {0.014, 1}});
        BucketLatency canary5({{0.020, 1}, {0.021, 1}, {0.022, 1}, {0.023, 1}, {0.024, 1}});
        CHECK(mannWhitney(canary5, base5, spec).fails);
    }
}
