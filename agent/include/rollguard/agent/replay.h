#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/agent/sliding_window.h"
#include "rollguard/agent/timeline.h"

namespace rollguard::agent {

/// How far a replay has got; handed to ReplayOptions::on_progress.
struct ReplayProgress {
    std::string source;                ///< the source being read
    std::size_t source_index = 0;      ///< 0-based, of `sources`
    std::size_t sources = 0;           ///< sources replayed in all
    std::uint64_t bytes_read = 0;      ///< of this source
    std::uint64_t bytes_total = 0;     ///< sizes of the files at the start
    std::uint64_t lines = 0;           ///< of this source so far
    double seconds = 0.0;              ///< since this source started
};

struct ReplayOptions {
    /// Names of the sources to replay; empty: every source of the config gets every file.
    std::vector<std::string> sources;
    /// Called about every `progress_interval` while a source is read, from a helper
    /// thread (the reading thread never waits for it); empty: no helper thread.
    std::function<void(const ReplayProgress&)> on_progress;
    std::chrono::milliseconds progress_interval{250};
    /// Evaluate the rules tick by tick on the lines' own timestamps (sources with a
    /// `timestamp` field) and build the timeline.
    bool timeline = true;
    /// The timeline's span: ticks before `from` warm the windows but are not recorded;
    /// reading stops after `to`.
    std::optional<rules::TimePoint> from;
    std::optional<rules::TimePoint> to;
};

/// Totals of one label set of a replayed source.
struct ReplayLabelSet {
    std::vector<std::string> values;  ///< one per label (ReplaySourceResult::label_names); "" = absent
    IntervalStats stats;
};

/// The outcome of replaying the files through one source.
struct ReplaySourceResult {
    std::string name;
    std::vector<std::string> files;  ///< as given, each file once (by device and inode)
    std::uint64_t bytes = 0;
    std::uint64_t lines = 0;  ///< complete lines (good, bad and blank)
    std::uint64_t bad_invalid_json = 0;
    std::uint64_t bad_not_object = 0;
    std::uint64_t bad_latency = 0;
    std::uint64_t bad_too_long = 0;
    std::uint64_t bad_invalid_utf8 = 0;
    std::uint64_t bad_timestamp = 0;
    std::uint64_t label_overflow = 0;  ///< lines counted in the "__other__" set
    /// With a timeline: events whose time bucket was more than `lateness` older than the
    /// replay's clock when read (dropped from the windows, as the daemon would).
    std::uint64_t too_late = 0;
    std::uint64_t read_errors = 0;
    /// Files whose last line has no newline: like the daemon, replay counts a line only
    /// when its newline has arrived, so that last line is not counted.
    std::vector<std::string> unterminated;
    /// Everything the source recorded, as one interval of the store: events, errors and
    /// the latency histogram in the units of `settings`. (The seam for #5's timeline.)
    IntervalStats stats;
    HistogramSettings settings;
    double wall_seconds = 0.0;
    /// For a source with labels: the label names and per-label-set totals, in order of
    /// first appearance (the overflow set where it first overflowed). Replay only: the
    /// daemon keeps no per-set histograms (each dense one is ~190 KB).
    std::vector<std::string> label_names;
    std::vector<ReplayLabelSet> label_sets;

    std::uint64_t badTotal() const {
        return bad_invalid_json + bad_not_object + bad_latency + bad_too_long + bad_invalid_utf8 + bad_timestamp;
    }
    std::int64_t events() const { return stats.events; }
    std::int64_t errors() const { return stats.errors; }
    /// Events that carried a latency.
    std::int64_t latencyCount() const { return stats.latency.totalCount(); }
    /// errors / events; NaN with no events.
    double errorRatio() const;
    /// Latency at quantile q (0..1) in seconds, within the histogram's precision; NaN
    /// with no latencies.
    double quantileSeconds(double q) const;
    double maxSeconds() const;
    double linesPerSecond() const;
};

/// The outcome of a replay. `usage_errors` (an unknown source name, no files, no
/// sources) and `file_errors` (a file that cannot be read: "path: reason") are checked
/// before anything is read: when either is non-empty, `sources` is empty.
struct ReplayResult {
    std::vector<ReplaySourceResult> sources;
    /// What the daemon would have decided: every rule of every source with a `timestamp`
    /// field, evaluated at every tick of the log's own time (hooks never run).
    Timeline timeline;
    /// Why some rules are not in the timeline (e.g. their source has no timestamp).
    std::vector<std::string> timeline_notes;
    std::vector<std::string> usage_errors;
    std::vector<std::string> file_errors;
    double wall_seconds = 0.0;

    bool ok() const { return usage_errors.empty() && file_errors.empty(); }
};

/// Reads `files` to their end through the daemon's own code path, once per selected
/// source: a copy of the source's config with paths = the files (exact paths, not
/// globs), no excludes and read_from = beginning, an IntervalRecorder and a LogTailer
/// driven by pollOnce() on the calling thread until nothing more is consumed. Sources
/// run one after the other. Never throws on bad input; problems are in the result.
/// Thread-safety: none needed; each call owns everything it uses.
ReplayResult replayFiles(const Config& config, const std::vector<std::string>& files,
                         const ReplayOptions& options = {});

/// Human-readable report: per source lines, bad lines by reason, events, errors, error
/// ratio, p50/p90/p99/p99.9/max, wall time and lines per second; for a source with
/// labels, the 20 label sets with the most events (events, error ratio, p99), then
/// "... and N more".
std::string renderReplayText(const ReplayResult& result);

/// The same figures as one JSON document (latencies in seconds; null when undefined),
/// every label set included.
std::string renderReplayJson(const ReplayResult& result);

/// One progress line without a line end: "replay app: 120.0 MB / 480.0 MB (25%), ...".
std::string formatReplayProgress(const ReplayProgress& progress);

}  // namespace rollguard::agent
