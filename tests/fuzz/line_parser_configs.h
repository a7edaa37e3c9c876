#pragma once
// The source configs of fuzz_line_parser, shared with the [fuzz] regression tests
// (tests/unit/test_fuzz_regressions.cpp) so that a saved input replays under exactly the
// config the fuzzer gave it. Six configs: nested field paths, latency units ms/s/us/ns
// and duration strings, start/end timestamps, gte/ranges/in/is-true/present predicates
// nested in all/any, labels, event time.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rollguard/agent/log_source.h"

namespace rollguard::fuzz {

using agent::ErrorPredicate;
using agent::LatencyField;
using agent::LatencyUnit;
using agent::LogSourceConfig;
using agent::TimeMode;

inline ErrorPredicate leaf(ErrorPredicate::Kind kind, std::string field) {
    ErrorPredicate p;
    p.kind = kind;
    p.field = std::move(field);
    return p;
}

/// fuzz_line_parser's source configs: an input's first byte picks configs[byte % size].
inline std::vector<LogSourceConfig> lineParserConfigs() {
    std::vector<LogSourceConfig> configs;
    {  // 0: nested latency in ms, status >= 500
        LogSourceConfig c;
        c.name = "nested_ms";
        c.latency = LatencyField{};
        c.latency->field = "http.duration_ms";
        c.latency->unit = LatencyUnit::Milliseconds;
        c.error = leaf(ErrorPredicate::Kind::NumberAtLeast, "http.status");
        c.error.gte = 500;
        configs.push_back(std::move(c));
    }
    {  // 1: seconds, level in [...], labels
        LogSourceConfig c;
        c.name = "seconds_in";
        c.latency = LatencyField{};
        c.latency->field = "latency";
        c.latency->unit = LatencyUnit::Seconds;
        c.error = leaf(ErrorPredicate::Kind::StringIn, "level");
        c.error.in = {"error", "fatal", ""};
        c.labels = {{"method", "req.method"}, {"route", "req.route"}};
        configs.push_back(std::move(c));
    }
    {  // 2: microseconds, any(ranges, is_true, present)
        LogSourceConfig c;
        c.name = "us_any";
        c.latency = LatencyField{};
        c.latency->field = "t.us";
        c.latency->unit = LatencyUnit::Microseconds;
        c.error.kind = ErrorPredicate::Kind::Any;
        auto ranges = leaf(ErrorPredicate::Kind::NumberInRanges, "status");
        ranges.ranges = {{500, 599}, {429, 429}};
        c.error.terms = {ranges, leaf(ErrorPredicate::Kind::IsTrue, "failed"),
                         leaf(ErrorPredicate::Kind::Present, "exception")};
        configs.push_back(std::move(c));
    }
    {  // 3: nanoseconds, all(gte, any(in, present)), event time (RFC 3339 or epoch s)
        LogSourceConfig c;
        c.name = "ns_event";
        c.latency = LatencyField{};
        c.latency->field = "dur_ns";
        c.latency->unit = LatencyUnit::Nanoseconds;
        c.error.kind = ErrorPredicate::Kind::All;
        auto gte = leaf(ErrorPredicate::Kind::NumberAtLeast, "code");
        gte.gte = 400;
        ErrorPredicate any;
        any.kind = ErrorPredicate::Kind::Any;
        auto in = leaf(ErrorPredicate::Kind::StringIn, "a.b.c");
        in.in = {"x", "y"};
        any.terms = {in, leaf(ErrorPredicate::Kind::Present, "err")};
        c.error.terms = {gte, any};
        c.time = TimeMode::Event;
        c.timestamp = "ts";
        c.timestamp_unit = LatencyUnit::Seconds;
        c.labels = {{"host", "host"}};
        configs.push_back(std::move(c));
    }
    {  // 4: latency = end - start timestamps (epoch ms), no error predicate
        LogSourceConfig c;
        c.name = "start_end";
        c.latency = LatencyField{};
        c.latency->start_field = "start";
        c.latency->end_field = "timing.end";
        c.latency->timestamp_unit = LatencyUnit::Milliseconds;
        configs.push_back(std::move(c));
    }
    {  // 5: no latency, labels on deep paths, event time in epoch ns
        LogSourceConfig c;
        c.name = "labels_only";
        c.error = leaf(ErrorPredicate::Kind::IsTrue, "x.y.z.failed");
        c.labels = {{"a", "k8s.pod.name"}, {"b", "n"}, {"c", "v"}};
        c.time = TimeMode::Event;
        c.timestamp = "time.unix_nano";
        c.timestamp_unit = LatencyUnit::Nanoseconds;
        configs.push_back(std::move(c));
    }
    return configs;
}

/// The config fuzz_line_parser gives `input` (its first byte chooses; the rest is the
/// text). A copy, so that tests can name what the config reads.
inline LogSourceConfig lineParserConfigFor(std::string_view input) {
    const std::vector<LogSourceConfig> configs = lineParserConfigs();
    return configs[static_cast<unsigned char>(input.at(0)) % configs.size()];
}

}  // namespace rollguard::fuzz
