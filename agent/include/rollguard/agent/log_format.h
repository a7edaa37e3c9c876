#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

// Kept out of this header so it does not pull spdlog into every includer; callers that
// use the formatter include <spdlog/spdlog.h> themselves.
namespace spdlog {
class formatter;
}

namespace rollguard::agent {

/// `[agent] log_format`: how the agent's own log lines on stderr look.
enum class LogFormat {
    Text,  ///< "2026-12-01T11:29:45.123+00:00 info  message" (for people)
    Json,  ///< one JSON object per line: ts, level, msg, logger (for log pipelines)
};

/// "text" or "json".
std::string_view logFormatName(LogFormat format);

/// The level names rollguard uses in its config, its flags and its JSON lines: trace,
/// debug, info, warn, error, critical ("off" for spdlog's off). `level` is a
/// spdlog::level::level_enum value; anything else gives "unknown".
std::string_view logLevelName(int level);

/// One JSON log record, newline included:
/// {"ts":"2026-12-01T11:29:45.123+01:00","level":"info","msg":"...","logger":"rollguard"}.
/// `ts` is RFC 3339 in the local time zone with milliseconds and a numeric offset
/// (+00:00 for UTC). `msg` and `logger` are escaped whatever they hold: quotes,
/// backslashes and control characters are escaped and invalid UTF-8 becomes U+FFFD, so
/// the line always parses. Pure apart from reading the time zone; thread-safe.
std::string formatJsonLogRecord(std::chrono::system_clock::time_point ts, std::string_view level,
                                std::string_view logger, std::string_view msg);

/// The spdlog formatter of a format. Json: formatJsonLogRecord for each record.
/// Text: "<ts> <level> <msg>" with the level coloured on a terminal; with `journal` true
/// (stderr goes to systemd's journal, which stamps every line itself) the timestamp is
/// left out and the line starts with the syslog priority prefix ("<6>" for info, see
/// sd-daemon(3)) so journalctl shows the right priority. `journal` does not change Json
/// lines: a pipeline reading them wants `ts` and pure JSON. A formatter instance is not
/// thread-safe; spdlog calls it under its sink's lock.
std::unique_ptr<spdlog::formatter> makeLogFormatter(LogFormat format, bool journal);

/// True when JOURNAL_STREAM (set by systemd for a service whose stdout/stderr go to the
/// journal, "<device>:<inode>" in decimal) names the file open on `fd`, i.e. the fd still
/// goes to the journal and was not redirected by a wrapper. `journal_stream` is the
/// variable's value (nullptr: unset). Thread-safe.
bool isJournalStream(const char* journal_stream, int fd);

/// isJournalStream(getenv("JOURNAL_STREAM"), STDERR_FILENO).
bool stderrIsJournal();

}  // namespace rollguard::agent
