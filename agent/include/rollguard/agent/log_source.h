#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/agent/sliding_window.h"

namespace rollguard::agent {

/// The store settings for a source's latencies: the resolution, highest value and
/// significant figures of its `latency` table (defaults without one). The daemon and
/// replay both use it, so replayed figures equal live ones.
HistogramSettings histogramSettingsFor(const LogSourceConfig& source);

/// Why a line was not counted. InvalidUtf8: the line is not valid UTF-8 (overlong forms,
/// surrogates, truncated sequences, ...) anywhere, even where it is not valid JSON either.
/// BadTimestamp: with time = "event", the timestamp field is missing, null or unparseable.
enum class BadLineReason { InvalidJson, NotAnObject, BadLatency, TooLong, InvalidUtf8, BadTimestamp };
inline constexpr int kBadLineReasons = 6;
const char* toString(BadLineReason r);

/// The result of parsing one JSON log line.
struct ParsedLine {
    bool ok = false;
    BadLineReason reason = BadLineReason::InvalidJson;  ///< when !ok
    double latency_seconds = -1.0;  ///< < 0: the line has no latency
    bool error = false;
    /// With time = "event": the line's timestamp in ns since the Unix epoch.
    std::optional<std::int64_t> event_time_ns;
    /// One value per configured label (in LogSourceConfig::labels order); "" = absent.
    /// Views into the parser's buffers: valid until its next parse() or parseMany().
    std::span<const std::string_view> labels;
};

/// An RFC 3339 timestamp ("2026-11-23T10:04:12.5Z", "...+02:00"; the zone is required)
/// as nanoseconds since the Unix epoch; nullopt when it is not one or lies outside the
/// years int64 nanoseconds reach (about 1685..2255, the bound event times use too). The parser of
/// `timestamp` fields, for the command line's --from/--to too.
std::optional<std::int64_t> parseRfc3339Nanos(std::string_view text);

/// The label value of the overflow set and of values longer than kMaxLabelValueBytes.
inline constexpr const char* kOtherLabelValue = "__other__";
/// A label value longer than this (log and scrape sources alike) becomes kOtherLabelValue:
/// values that long are almost always ids or messages, not dimensions.
inline constexpr std::size_t kMaxLabelValueBytes = 128;

/// One line of a LineParser::parseMany() buffer and what parse() says of it.
struct ParsedLineOf {
    std::string_view line;  ///< without its '\n'
    ParsedLine parsed;
};

/// Extracts latency and the error predicate from JSON log lines with simdjson. Every
/// field the config reads (the latency field or the two timestamps, and every field of
/// the predicate tree) is resolved in one pass over the object, then evaluated.
/// A line that is not valid UTF-8 is InvalidUtf8; one that is not a JSON object is
/// InvalidJson or NotAnObject. A line whose latency field is present but not a
/// non-negative number or duration string is BadLatency; so is one with a timestamp that
/// is not RFC 3339 (zone required) or an epoch number (or numeric string) in
/// `timestamp_unit`, and one whose end is before its start. A missing latency field is
/// fine (the event counts, with no latency); so is a null latency, and a missing or null
/// start or end timestamp. Error predicates: a missing field, or one of another type, is
/// not an error; Present holds for any value but null; NumberAtLeast and NumberInRanges
/// accept numeric strings; StringIn matches exactly and case-sensitively.
/// With time = "event" the `timestamp` field is read like latency timestamps (RFC 3339,
/// or an epoch number or numeric string in the source's `timestamp_unit`); missing, null
/// or unparseable is BadTimestamp. Labels: see ParsedLine::labels and LogSourceConfig::labels.
/// A trailing '\r' is ignored. An empty line is InvalidJson here; LogTailer skips blank
/// lines before parsing. Values of fields it does not look at are not validated
/// (simdjson On-Demand skips them), but the top-level structure always is.
/// Thread-safety: one instance per thread (it owns a simdjson parser).
class LineParser {
public:
    explicit LineParser(const LogSourceConfig& config);
    ~LineParser();
    LineParser(const LineParser&) = delete;
    LineParser& operator=(const LineParser&) = delete;

    ParsedLine parse(std::string_view line);

    /// Parses every line of `lines`: each ends with '\n' (not part of the line), and a
    /// last one without a '\n' counts too. The result holds one entry per line, in order,
    /// each exactly what parse(line) returns (a blank line is InvalidJson, as there); it
    /// stays valid until the next call. Lines are parsed in windows of many lines with
    /// simdjson's iterate_many; a line's result is trusted only when its document was an
    /// object that began at the line's first non-blank byte, whose walk consumed exactly
    /// the line's tokens, and the next document began at the next non-blank line's (or
    /// the stream ended cleanly): see parseWindow() and docs/RELIABILITY.md (fuzzing).
    /// The first line the stream cannot vouch for goes through parse() and the stream
    /// starts again after it, so a bad line never changes what its neighbours get.
    std::span<const ParsedLineOf> parseMany(std::string_view lines);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// A label set: one value per label of its source, in LogSourceConfig::labels order;
/// "" = absent.
using LabelSet = std::vector<std::string>;

/// Decides which store streams a label set feeds, besides stream 0 (the whole source,
/// always fed): it appends their ids to `streams`. Called once per new label set, on the
/// tailer's thread; the answer is cached per label-set id. Issue #5 builds routers from
/// rule selections.
using StreamRouter = std::function<void(const LabelSet& labels, std::vector<std::uint32_t>& streams)>;

/// The label sets of one source, interned to small integer ids in order of first
/// appearance. At most `max_sets` regular sets; then every new tuple maps to the
/// overflow set (every value "__other__"), created once and not counted against the cap.
/// Thread-safety: one writer (the tailer thread) calls intern(); lookups of existing
/// sets there take no lock, insertions take the mutex. size(), labels() and all() may
/// be called from any thread (they take the mutex).
class LabelSetTable {
public:
    LabelSetTable(std::size_t label_count, std::size_t max_sets);

    /// The id of `values` (one per label), interning it when new. `overflowed` is set
    /// when the tuple was mapped to the overflow set; `created` when the id is new.
    std::uint32_t intern(std::span<const std::string_view> values, bool& overflowed, bool& created);

    /// Sets interned so far, the overflow set included.
    std::size_t size() const;
    /// The values of set `id` (< size()).
    LabelSet labels(std::uint32_t id) const;
    /// Every set, by id.
    std::vector<LabelSet> all() const;

private:
    std::size_t label_count_;
    std::size_t max_sets_;
    std::string key_;  // reused: the encoded tuple being looked up
    std::unordered_map<std::string, std::uint32_t> ids_;
    std::optional<std::uint32_t> overflow_id_;
    mutable std::mutex mutex_;  // guards sets_ and ids_ insertions against readers
    std::vector<LabelSet> sets_;
};

/// Counters of a log source; read from any thread.
struct LogSourceCounters {
    std::atomic<std::uint64_t> lines{0};        ///< complete lines seen (good + bad)
    std::atomic<std::uint64_t> bytes{0};        ///< bytes consumed
    std::atomic<std::uint64_t> bad_invalid_json{0};
    std::atomic<std::uint64_t> bad_not_object{0};
    std::atomic<std::uint64_t> bad_latency{0};
    std::atomic<std::uint64_t> bad_too_long{0};
    std::atomic<std::uint64_t> bad_invalid_utf8{0};
    std::atomic<std::uint64_t> bad_timestamp{0};  ///< time = "event" and no usable timestamp
    /// Lines whose label tuple came after max_label_sets others: counted in the overflow set.
    std::atomic<std::uint64_t> label_overflow{0};
    /// Events dropped because their event-time bucket ended more than `lateness` before
    /// the clock (counted by the daemon's tick, not the tailer).
    std::atomic<std::uint64_t> too_late{0};
    std::atomic<std::uint64_t> files_opened{0};
    std::atomic<std::uint64_t> rotations{0};
    std::atomic<std::uint64_t> truncations{0};
    std::atomic<std::uint64_t> read_errors{0};
    /// A file that is not the one its checkpointed position (or the bytes before our
    /// offset) describes: inode reused, replaced or rewritten; it was read from its start.
    std::atomic<std::uint64_t> identity_changes{0};

    std::uint64_t badTotal() const {
        return bad_invalid_json + bad_not_object + bad_latency + bad_too_long + bad_invalid_utf8 + bad_timestamp;
    }
};

/// Follows the files matching a source's globs and feeds every complete line to the
/// parser and then the recorder. Owns one background thread per source, the file
/// descriptors and the inotify descriptor.
///
/// Finding files: `paths` are glob(3) patterns (*, ?, [..], {a,b}); a pattern with a
/// `**` component is expanded by the tailer itself: `**` matches zero or more
/// directories (symlinked directories are not descended into), the other components go
/// through fnmatch(3) without FNM_PERIOD (a leading dot is not special) and without
/// braces. `exclude` patterns with a '/' match the whole path component by component
/// (`**` too); without one they match the file name. Globs are re-scanned on every
/// poll and on directory events. Symlinks are followed: identity is the target's
/// device + inode, and both the link's and the target's directories are watched, so a
/// re-pointed link or a target renamed and recreated is a rotation.
///
/// Waking: with `watch = Auto` it sleeps on inotify (IN_MODIFY, IN_CREATE,
/// IN_MOVED_TO, ...) and also wakes every `poll_interval` to rescan globs and stat
/// files, as a safety net where inotify is blind; with `watch = Poll` it uses no
/// inotify at all and wakes every `poll_interval` only.
///
/// Rotation: a file whose path now names another inode or nothing (renamed, deleted)
/// is drained, kept open and read for late lines until `rotate_wait` (steady clock)
/// passed since the rotation was seen or its last data, then drained once more and
/// closed; the new file at the path is read from its start. Truncation (size <
/// offset) restarts at 0 (`truncations`). At each rescan the bytes just before the
/// committed offset are hashed again: a file rewritten in place (copytruncate
/// followed by more writes than we had read) restarts at 0 (`identity_changes`).
/// Inode reuse cannot affect a file we hold open (our descriptor keeps its inode); a
/// file that gets a closed file's inode is new to us and read from its start.
///
/// Lines: partial last lines are held until their newline arrives (a rotated file's
/// last partial line counts when it is closed). Lines longer than max_line_bytes are
/// skipped up to their newline and counted, with memory bounded by max_line_bytes plus
/// one 256 KiB read buffer. Blank lines count in `lines` but are neither events nor
/// bad; a too-long line counts in `lines` and `bad_too_long` once (once more after a
/// restart whose checkpoint was taken while inside it).
///
/// Labels and streams: with `labels` configured every good line's value tuple is
/// interned in labelSets() (capped, see LabelSetTable); the router set with
/// setRouter() says once per new set which further streams it feeds. Event time: with
/// time = "event" each event is keyed by its timestamp floored to the bucket width
/// (setBucketWidth, default 1 s). Such events go to the recorder as a KeyedBatch per chunk
/// (RecordedPart per stream and bucket); stream 0 arrival-time events keep the plain
/// IntervalStats batch.
///
/// Positions: after every chunk read (and whenever the set of files changes) the batch
/// is recorded with the positions of every open file, rotated ones still draining
/// included (IntervalRecorder::recordBatch):
/// offset = end of the last complete line consumed, fingerprint = FNV-1a 64 of the up
/// to 256 bytes before it (0 bytes: fingerprint 0).
/// Thread-safety: restore/start/stop/pollOnce from one thread; counters(), files() and
/// rotatedFiles() from any.
class LogTailer {
public:
    LogTailer(LogSourceConfig config, IntervalRecorder& recorder);
    ~LogTailer();  // stops
    LogTailer(const LogTailer&) = delete;
    LogTailer& operator=(const LogTailer&) = delete;

    /// Resume points from a checkpoint, applied by the next start()/pollOnce(): a file
    /// whose device, inode and fingerprint still match resumes at its offset (this wins
    /// over read_from), whatever path it has now (renamed while we were down); a file
    /// whose identity changed (same inode, other bytes before the offset or shorter than
    /// it; or a path now holding another inode) is read from its start and counted in
    /// `identity_changes`; positions of files that no longer exist are dropped. With a
    /// non-empty `positions`, files they do not know appeared while we were down and are
    /// read from their start, not per read_from. Call before start().
    void restore(const SourcePositions& positions);

    /// Scans the globs (files present now start per read_from) and starts the thread.
    void start();
    /// Stops and joins the thread; idempotent.
    void stop();

    /// Reads everything available right now on the calling thread (tests and replay);
    /// must not be called while the thread runs.
    void pollOnce();
    /// Like pollOnce() but reads at most `max_chunks_per_file` chunks (256 KiB) of each
    /// file, so a caller can take the recorder's data between steps (replay's timeline);
    /// the globs are scanned on the first call only. Returns true while some file may
    /// have more to read.
    bool pollSome(int max_chunks_per_file);

    /// Which further streams each label set feeds; default none (stream 0 only). Call
    /// before start()/pollOnce().
    void setRouter(StreamRouter router);
    /// Width of event-time buckets (the agent tick); default 1 s. Call before start().
    void setBucketWidth(std::chrono::nanoseconds width);
    /// The source's label sets (empty without `labels`).
    const LabelSetTable& labelSets() const;

    const LogSourceCounters& counters() const { return counters_; }
    /// For the daemon's tick, which counts `too_late`.
    LogSourceCounters& counters() { return counters_; }
    const std::string& name() const { return config_.name; }
    /// Paths currently followed.
    std::vector<std::string> files() const;
    /// Files rotated away (renamed or deleted) and still open for late lines until
    /// rotate_wait, by the path they were followed as.
    std::vector<std::string> rotatedFiles() const;

private:
    struct Impl;
    LogSourceConfig config_;
    IntervalRecorder& recorder_;
    LogSourceCounters counters_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace rollguard::agent
