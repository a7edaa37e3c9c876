// Fuzz target: the JSON log line extractor (LineParser, agent/src/sources/line_parser.cpp).
// Input: the first byte picks one of six source configs (nested field paths, latency
// units ms/s/us/ns and duration strings, start/end timestamps, gte/ranges/in/is-true/
// present predicates nested in all/any, labels, event time); the rest is a chunk of log
// lines. Checks: no crash (ASan/UBSan); every line of parseMany() gets exactly what
// parse() gives it alone (the documented contract); a good line has a latency that is
// -1 or finite and >= 0, one label value per label, and an event time iff time = event.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "rollguard/agent/log_source.h"

using namespace rollguard::agent;
using rollguard::fuzz::check;

namespace {

ErrorPredicate leaf(ErrorPredicate::Kind kind, std::string field) {
    ErrorPredicate p;
    p.kind = kind;
    p.field = std::move(field);
    return p;
}

std::vector<LogSourceConfig> makeConfigs() {
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

struct Snapshot {
    bool ok = false;
    BadLineReason reason = BadLineReason::InvalidJson;
    double latency = 0.0;
    bool error = false;
    std::optional<std::int64_t> event_time_ns;
    std::vector<std::string> labels;

    bool operator==(const Snapshot& o) const {
        const bool same_latency = latency == o.latency || (std::isnan(latency) && std::isnan(o.latency));
        return ok == o.ok && (!ok || (same_latency && error == o.error && event_time_ns == o.event_time_ns &&
                                      labels == o.labels)) &&
               (ok || reason == o.reason);
    }
};

Snapshot snapshot(const ParsedLine& p) {
    Snapshot s;
    s.ok = p.ok;
    s.reason = p.reason;
    s.latency = p.latency_seconds;
    s.error = p.error;
    s.event_time_ns = p.event_time_ns;
    for (const auto v : p.labels) {
        s.labels.emplace_back(v);
    }
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const std::vector<LogSourceConfig> configs = makeConfigs();
    static std::vector<std::unique_ptr<LineParser>> parsers = [] {
        std::vector<std::unique_ptr<LineParser>> out;
        for (const auto& c : configs) {
            out.push_back(std::make_unique<LineParser>(c));
        }
        return out;
    }();
    if (size == 0) {
        return 0;
    }
    const std::size_t which = data[0] % configs.size();
    const LogSourceConfig& config = configs[which];
    LineParser& parser = *parsers[which];
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);

    std::vector<std::pair<std::string_view, Snapshot>> many;
    for (const auto& entry : parser.parseMany(text)) {
        many.emplace_back(entry.line, snapshot(entry.parsed));
    }
    for (const auto& [line, batch] : many) {
        const Snapshot alone = snapshot(parser.parse(line));
        check(alone == batch, "parseMany() and parse() disagree on a line");
        if (alone.ok) {
            check(alone.latency == -1.0 || (std::isfinite(alone.latency) && alone.latency >= 0.0),
                  "latency neither -1 nor finite and >= 0");
            check(alone.labels.size() == config.labels.size(), "not one label value per label");
            check(alone.event_time_ns.has_value() == (config.time == TimeMode::Event),
                  "event time present iff time = event");
        }
    }
    return 0;
}
