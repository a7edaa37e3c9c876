#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/agent/sliding_window.h"

namespace rollguard::agent {

/// Why a line was not counted. InvalidUtf8: the line is not valid UTF-8 (overlong forms,
/// surrogates, truncated sequences, ...) anywhere, even where it is not valid JSON either.
enum class BadLineReason { InvalidJson, NotAnObject, BadLatency, TooLong, InvalidUtf8 };
const char* toString(BadLineReason r);

/// The result of parsing one JSON log line.
struct ParsedLine {
    bool ok = false;
    BadLineReason reason = BadLineReason::InvalidJson;  ///< when !ok
    double latency_seconds = -1.0;  ///< < 0: the line has no latency
    bool error = false;
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

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
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
    std::atomic<std::uint64_t> files_opened{0};
    std::atomic<std::uint64_t> rotations{0};
    std::atomic<std::uint64_t> truncations{0};
    std::atomic<std::uint64_t> read_errors{0};

    std::uint64_t badTotal() const {
        return bad_invalid_json + bad_not_object + bad_latency + bad_too_long + bad_invalid_utf8;
    }
};

/// Follows the files matching a source's globs and feeds every complete line to the
/// parser and then the recorder. One background thread per source; it sleeps on
/// inotify (IN_MODIFY, IN_CREATE, IN_MOVED_TO, ...) and also wakes every
/// `poll_interval` to rescan globs and stat files, as a safety net where inotify is
/// blind. Handles rename rotation (drains the old file, then reads the new one from its
/// start), truncation (size < offset: restart at 0), and partial last lines (held
/// until their newline arrives). Lines longer than max_line_bytes are skipped up to
/// their newline and counted, with bounded memory. Blank lines count in `lines` but are
/// neither events nor bad; a too-long line counts in `lines` and `bad_too_long` once.
/// Globs are glob(3) patterns; `**` is not recursive.
/// Thread-safety: start/stop from one thread; counters() from any.
class LogTailer {
public:
    LogTailer(LogSourceConfig config, IntervalRecorder& recorder);
    ~LogTailer();  // stops
    LogTailer(const LogTailer&) = delete;
    LogTailer& operator=(const LogTailer&) = delete;

    /// Resume points from a checkpoint, applied by the next start()/pollOnce(): a file
    /// whose device, inode and fingerprint still match resumes at its offset (this wins
    /// over read_from); a file whose identity changed is read from its start; positions
    /// of files that no longer exist are dropped. Call before start().
    void restore(const SourcePositions& positions);

    /// Scans the globs (files present now start per read_from) and starts the thread.
    void start();
    /// Stops and joins the thread; idempotent.
    void stop();

    /// Reads everything available right now on the calling thread (tests and replay);
    /// must not be called while the thread runs.
    void pollOnce();

    const LogSourceCounters& counters() const { return counters_; }
    const std::string& name() const { return config_.name; }
    /// Paths currently followed.
    std::vector<std::string> files() const;

private:
    struct Impl;
    LogSourceConfig config_;
    IntervalRecorder& recorder_;
    LogSourceCounters counters_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace rollguard::agent
