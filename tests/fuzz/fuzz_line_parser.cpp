// Fuzz target: the JSON log line extractor (LineParser, agent/src/sources/line_parser.cpp).
// Input: the first byte picks one of six source configs (line_parser_configs.h: nested
// field paths, latency units ms/s/us/ns and duration strings, start/end timestamps,
// gte/ranges/in/is-true/present predicates nested in all/any, labels, event time); the
// rest is a chunk of log lines. Checks: no crash (ASan/UBSan); every line of parseMany() gets exactly what
// parse() gives it alone (the documented contract); a good line has a latency that is
// -1 or finite and >= 0, one label value per label, and an event time iff time = event.
#include <cmath>
#include <cstdio>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "line_parser_configs.h"
#include "rollguard/agent/log_source.h"

using namespace rollguard::agent;
using rollguard::fuzz::check;
using rollguard::fuzz::lineParserConfigs;

namespace {

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
    static const std::vector<LogSourceConfig> configs = lineParserConfigs();
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
        if (!(alone == batch)) {
            // What to triage: the line (escaped) and each path's verdict.
            std::fprintf(stderr, "config %s, line (%zu bytes): ", config.name.c_str(), line.size());
            for (const unsigned char c : line) {
                std::fprintf(stderr, c >= 0x20 && c < 0x7f && c != '\\' ? "%c" : "\\x%02x", c);
            }
            std::fprintf(stderr, "\nparse(): ok=%d reason=%s; parseMany(): ok=%d reason=%s\n", alone.ok,
                         toString(alone.reason), batch.ok, toString(batch.reason));
        }
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
