#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rollguard/agent/checkpoint.h"
#include "rollguard/agent/config.h"
#include "rollguard/agent/log_source.h"
#include "rollguard/agent/sliding_window.h"
#include "rollguard/rules/clock.h"
#include "rollguard/rules/engine.h"
#include "rollguard/rules/selection.h"

namespace rollguard::agent {

/// The judgement loop shared by the daemon, `rollguard replay` and `rollguard test`:
/// the sources' store streams, one window per rule over the streams it reads, and the
/// rule engine. Callers feed what each source recorded, then evaluate at a time point.
/// The judge reads no clock and no socket, so the three callers decide exactly alike on
/// the same data; the only file it reads is a rule's `baseline = { file = ... }`.
///
/// Sources: the config's log sources first (index i is config.sources[i]), then every
/// scrape stream (scrapeStreams() of each scrape source, in config order), each a
/// source of its own named "<source>.<series>".
///
/// Streams: stream 0 of a source is everything it recorded; rules without a selection
/// read it. Each distinct rule selection (labels matchers + group_by) of a source is a
/// *slot*; each group of a slot is one stream (one Series), created when the tailer's
/// router first sees a label set that matches (routerFor()). A baseline selection
/// (`baseline = { labels = {...} }` or `compare`) is a slot of its own that inherits the
/// rule's group_by, so group g of the rule is compared with group g of the baseline.
/// Memory: every stream costs what a source's series costs (a dense aggregate per
/// window); max_groups bounds them per slot.
///
/// Thread-safety: one owner (the evaluation thread) for everything but the routers,
/// which the tailers call from their threads (they take the judge's routing mutex).
class Judge {
public:
    static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();

    /// `collect_every`: how often the caller adds what its arrival-time sources (log
    /// sources without event time, scrapes) collected, when more often than once a tick
    /// (the daemon, which evaluates every evaluationInterval()); 0 = once a tick (replay,
    /// rule tests). Event-time sources are always added once a tick.
    explicit Judge(const Config& config, std::chrono::nanoseconds collect_every = {});
    ~Judge();
    Judge(const Judge&) = delete;
    Judge& operator=(const Judge&) = delete;

    /// Index of the source called `name`, or npos.
    std::size_t sourceIndex(std::string_view name) const;
    std::size_t sourceCount() const { return sources_.size(); }
    const std::string& sourceName(std::size_t source) const;
    /// Stream 0 (everything) of a source.
    /// Memory held by a source's windows: stream 0 and every label-set stream
    /// (Series::memoryBytes of each).
    std::size_t memoryBytes(std::size_t source) const;
    Series& series(std::size_t source);
    const Series& series(std::size_t source) const;

    /// The router a source's tailer routes its label sets with: to the streams of every
    /// rule selection they match. Empty for a source no selection reads.
    StreamRouter routerFor(std::size_t source);

    /// What source `source` observed up to `now` (arrival time: into the slot of `now`),
    /// stream 0.
    void add(std::size_t source, rules::TimePoint now, const IntervalStats& interval);
    /// One part a recorder returned. Arrival parts go into the slot of `now`; event-time
    /// parts at the end of their bucket, as if they had arrived at the tick ending it (so a
    /// window of W covers W of event time),
    /// or at `now` when stamped in the future. An
    /// event-time part whose bucket (of width `bucket`) ended more than the source's
    /// `lateness` before `now` is dropped: returns false and the caller counts its events.
    bool addPart(std::size_t source, const RecordedPart& part, rules::TimePoint now,
                 std::chrono::nanoseconds bucket);

    /// Whether the last scrape of a (scrape) source failed: its rules' inputs then carry
    /// fetch_error, so `on_error` applies. Stays until set again.
    void setFetchError(std::size_t source, bool failed);

    /// The selection streams of a source (not stream 0), for a checkpoint.
    std::vector<StreamCheckpoint> saveStreams(std::size_t source);
    /// Creates the streams the router assigned since, then returns the number of selection
    /// streams of a source (not stream 0): the number of forEachStream's calls until the
    /// next streamCount.
    std::size_t streamCount(std::size_t source);
    /// Calls fn(selection, group, series) for each selection stream of a source (not
    /// stream 0) created so far (streamCount creates new ones), in saveStreams' order.
    void forEachStream(std::size_t source,
                       const std::function<void(const std::string& selection, const std::string& group,
                                                Series& series)>& fn);
    /// Recreates checkpointed selection streams, before any data arrives: each goes back
    /// to the slot with the same selection and the same group, with its slots. Streams of
    /// selections no rule has any more are dropped. Returns the number restored.
    std::size_t restoreStreams(std::size_t source, const std::vector<StreamCheckpoint>& streams);

    /// Moves every stream to `now` and evaluates every rule, group by group. Between ticks
    /// (`on_tick` false, see Engine::evaluateGroups) event-time sources stay where the
    /// last tick left them.
    rules::Engine::Evaluation evaluate(rules::TimePoint now, bool on_tick = true);

    /// The inputs rule `rule_index` is evaluated on right now: one per group (a single
    /// group "" for a rule without group_by), with the baseline's statistics or value.
    std::vector<rules::EvalInput> inputsFor(std::size_t rule_index);

    /// Stream 0's statistics for a rule's window (the ungrouped view; empty when its
    /// source is unknown).
    rules::SeriesStats statsFor(std::size_t rule_index) const;

    const rules::Engine& engine() const { return engine_; }
    rules::Engine& engine() { return engine_; }

private:
    struct Slot;
    struct Source;
    struct RuleRef {
        std::size_t source = npos;
        std::optional<std::size_t> slot;           ///< the rule's selection, if any
        std::optional<std::size_t> baseline_slot;  ///< the baseline selection, if any
        std::chrono::nanoseconds window{0};
    };
    std::size_t slotFor(Source& source, const rules::Selection& selection, std::chrono::nanoseconds window);
    /// Creates the Series of streams the router has assigned since the last call.
    void adoptNewStreams(Source& source);
    rules::SeriesStats streamStats(const Source& source, std::uint32_t stream, std::chrono::nanoseconds window) const;
    std::optional<double> baselineFileValue(std::size_t rule_index);

    std::vector<std::unique_ptr<Source>> sources_;
    std::vector<RuleRef> rules_;
    struct FileValue {
        std::int64_t mtime_ns = -1;
        std::int64_t size = -1;
        std::optional<double> value;
    };
    std::map<std::size_t, FileValue> baseline_files_;
    rules::Engine engine_;
    /// The step of event-time groups and of the engine's counted history.
    std::chrono::nanoseconds tick_;
};

/// Reads the number at JSON `pointer` (RFC 6901, e.g. "/p99") in the JSON file at
/// `path`: a number, or a numeric string. nullopt when the file cannot be read, is not
/// JSON, or holds no number there.
std::optional<double> readJsonNumber(const std::string& path, const std::string& pointer);

}  // namespace rollguard::agent
