#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

#include "rollguard/agent/judge.h"
#include "rollguard/agent/log_source.h"
#include "rollguard/agent/rule_test.h"
#include "rollguard/agent/rule_value.h"
#include "rollguard/agent/timeline.h"
#include "rollguard/rules/duration.h"

namespace rollguard::agent {

namespace {

using std::chrono::nanoseconds;

/// Events a generated input has produced by offset `t`: floor(rate * elapsed), so the
/// events of consecutive ticks add up exactly.
std::int64_t eventsBy(const RuleTestInput& in, nanoseconds t) {
    const nanoseconds clamped = std::clamp(t, in.from, in.to);
    const double seconds = std::chrono::duration<double>(clamped - in.from).count();
    return static_cast<std::int64_t>(std::floor(in.rate * seconds + 1e-9));
}

/// Event i is an error when it moves round(n * ratio) up: errors are spread evenly.
bool isError(std::int64_t i, double ratio) {
    const auto upTo = [ratio](std::int64_t n) { return std::floor(static_cast<double>(n) * ratio + 0.5); };
    return upTo(i + 1) > upTo(i);
}

std::string listText(std::vector<std::string> names) {
    std::sort(names.begin(), names.end());
    std::string out = "[";
    for (const auto& n : names) {
        out += (out.size() > 1 ? ", " : "") + n;
    }
    return out + "]";
}

std::string offsetText(nanoseconds d) { return rules::formatDuration(d); }

std::string where(const SourceLocation& at) {
    return at.file + ":" + std::to_string(at.line) + ":" + std::to_string(at.column);
}

/// One line per rule: its state, since when, and its last value.
std::string ruleStates(const Judge& judge, rules::TimePoint start) {
    std::string out;
    const auto& specs = judge.engine().rules();
    for (std::size_t i = 0; i < specs.size(); ++i) {
        const auto& spec = specs[i];
        const auto& status = judge.engine().status(i);
        out += "      " + spec.name + ": " + rules::toString(status.state);
        if (status.since) {
            out += " since " + offsetText(*status.since - start);
        }
        const ValueShape shape = valueShapeOf(spec);
        if (shape.kind == ValueKind::Absolute) {
            const MetricUnit unit = shape.unit;
            out += " (" + spec.metric.text + "=" +
                   (status.last.value ? formatMetricValue(*status.last.value, unit) : std::string("no data")) +
                   ", " + rules::toString(spec.comparison) + " " +
                   (status.threshold ? formatMetricValue(*status.threshold, unit) : std::string("no baseline yet")) +
                   ", ";
        } else {
            out += " (" +
                   describeRuleValue(shape, ValueReading{status.last.value, status.threshold, status.baseline,
                                                         status.mann_whitney}) +
                   ", ";
        }
        out += std::to_string(status.last.samples) + " samples)\n";
    }
    return out;
}

class CaseRunner {
public:
    CaseRunner(const RuleTestFile& file, const RuleTestCase& test)
        : file_(file), test_(test), judge_(file.config), tick_(file.config.agent.tick) {}

    RuleTestOutcome run() {
        RuleTestOutcome outcome;
        outcome.name = test_.name;
        nanoseconds end{0};
        for (const auto& e : test_.expects) {
            end = std::max(end, e.at);
        }
        std::vector<const RuleTestExpect*> expects;
        for (const auto& e : test_.expects) {
            expects.push_back(&e);
        }
        std::stable_sort(expects.begin(), expects.end(),
                         [](const RuleTestExpect* a, const RuleTestExpect* b) { return a->at < b->at; });
        auto next_expect = expects.begin();

        std::optional<nanoseconds> prev;
        for (nanoseconds t{0}; t <= end; t += tick_) {
            feed(prev, t);
            for (const auto& notification : judge_.evaluate(file_.start + t).notifications) {
                hooks_.insert(hooks_.end(), notification.hooks.begin(), notification.hooks.end());
            }
            // Expectations between this tick and the next are checked on this tick's state.
            while (next_expect != expects.end() && (*next_expect)->at < t + tick_) {
                check(**next_expect, t, outcome);
                ++next_expect;
            }
            prev = t;
        }
        return outcome;
    }

private:
    /// Records every input event in (prev, t] into the judge at the tick `t`: into its
    /// source's stream 0 and the streams of the rule selections its labels match.
    void feed(std::optional<nanoseconds> prev, nanoseconds t) {
        std::map<std::pair<std::size_t, std::uint32_t>, IntervalStats> intervals;
        const auto record = [&](std::size_t source, const std::vector<std::uint32_t>& streams, double latency,
                                bool error) {
            const HistogramSettings& settings = judge_.series(source).settings();
            for (const std::uint32_t stream : streams) {
                auto it = intervals.find({source, stream});
                if (it == intervals.end()) {
                    it = intervals.emplace(std::pair(source, stream), IntervalStats(settings)).first;
                }
                IntervalStats& interval = it->second;
                ++interval.events;
                interval.errors += error ? 1 : 0;
                if (latency >= 0.0) {
                    interval.latency.record(static_cast<std::int64_t>(std::llround(latency * settings.units_per_second)));
                }
            }
        };
        for (const auto& in : test_.inputs) {
            const std::size_t source = judge_.sourceIndex(in.source);
            if (source == Judge::npos) {
                continue;  // the loader refuses unknown sources
            }
            if (!in.lines.empty()) {
                if ((prev && in.at <= *prev) || in.at > t) {
                    continue;
                }
                LineParser& parser = parserFor(source);
                for (const auto& line : in.lines) {
                    const ParsedLine parsed = parser.parse(line);
                    if (parsed.ok) {
                        const LabelSet labels(parsed.labels.begin(), parsed.labels.end());
                        record(source, streamsFor(source, labels), parsed.latency_seconds, parsed.error);
                    }
                }
                continue;
            }
            const auto& streams = streamsFor(source, labelSetOf(source, in));
            const std::int64_t first = prev ? eventsBy(in, *prev) : 0;
            const std::int64_t last = eventsBy(in, t);
            for (std::int64_t i = first; i < last; ++i) {
                const double latency =
                    in.latencies.empty() ? -1.0 : in.latencies[static_cast<std::size_t>(i) % in.latencies.size()];
                record(source, streams, latency, isError(i, in.error_ratio));
            }
        }
        for (auto& [key, interval] : intervals) {
            judge_.addPart(key.first, RecordedPart{key.second, std::nullopt, std::move(interval)}, file_.start + t,
                           tick_);
        }
    }

    /// A generated input's labels in its source's label order ("" = absent).
    LabelSet labelSetOf(std::size_t source, const RuleTestInput& in) const {
        LabelSet values;
        for (const auto& label : file_.config.sources[source].labels) {
            std::string value;
            for (const auto& [name, v] : in.labels) {
                if (name == label.name) {
                    value = v;
                }
            }
            values.push_back(std::move(value));
        }
        return values;
    }

    /// Stream 0 and the streams the judge's router sends this label set to, as the
    /// tailer would (once per label set).
    const std::vector<std::uint32_t>& streamsFor(std::size_t source, const LabelSet& labels) {
        auto it = streams_.find({source, labels});
        if (it == streams_.end()) {
            std::vector<std::uint32_t> streams{0};
            if (!file_.config.sources[source].labels.empty()) {
                auto& router = routers_[source];
                if (!router) {
                    router = judge_.routerFor(source);
                }
                if (router) {
                    router(labels, streams);
                }
            }
            it = streams_.emplace(std::pair(source, labels), std::move(streams)).first;
        }
        return it->second;
    }

    LineParser& parserFor(std::size_t source) {
        auto& parser = parsers_[source];
        if (!parser) {
            parser = std::make_unique<LineParser>(file_.config.sources[source]);
        }
        return *parser;
    }

    void check(const RuleTestExpect& expect, nanoseconds tick, RuleTestOutcome& outcome) {
        std::vector<std::string> firing;
        std::vector<std::string> pending;
        const auto& specs = judge_.engine().rules();
        for (std::size_t i = 0; i < specs.size(); ++i) {
            const auto state = judge_.engine().status(i).state;
            if (state == rules::AlertState::Firing) {
                firing.push_back(specs[i].name);
            } else if (state == rules::AlertState::Pending) {
                pending.push_back(specs[i].name);
            }
        }
        std::string problems;
        const auto compareSet = [&problems](const char* what, const std::optional<std::vector<std::string>>& want,
                                            const std::vector<std::string>& got) {
            if (want && listText(*want) != listText(got)) {
                problems += std::string("    ") + what + ": expected " + listText(*want) + ", got " + listText(got) + "\n";
            }
        };
        compareSet("firing", expect.firing, firing);
        compareSet("pending", expect.pending, pending);
        if (expect.hooks && *expect.hooks != hooks_) {
            const auto ordered = [](const std::vector<std::string>& v) {
                std::string out = "[";
                for (const auto& h : v) {
                    out += (out.size() > 1 ? ", " : "") + h;
                }
                return out + "]";
            };
            problems += "    hooks run so far: expected " + ordered(*expect.hooks) + ", got " + ordered(hooks_) + "\n";
        }
        if (!problems.empty()) {
            outcome.failures.push_back(where(expect.location) + ": at " + offsetText(expect.at) + " (tick " +
                                       offsetText(tick) + "):\n" + problems + "    rules at that tick:\n" +
                                       ruleStates(judge_, file_.start));
        }
    }

    const RuleTestFile& file_;
    const RuleTestCase& test_;
    Judge judge_;
    nanoseconds tick_;
    std::map<std::size_t, std::unique_ptr<LineParser>> parsers_;
    std::map<std::size_t, StreamRouter> routers_;
    std::map<std::pair<std::size_t, LabelSet>, std::vector<std::uint32_t>> streams_;
    std::vector<std::string> hooks_;
};

}  // namespace

std::vector<RuleTestOutcome> runRuleTests(const RuleTestFile& file) {
    std::vector<RuleTestOutcome> outcomes;
    for (const auto& test : file.tests) {
        outcomes.push_back(CaseRunner(file, test).run());
    }
    return outcomes;
}

}  // namespace rollguard::agent
