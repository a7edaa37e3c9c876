#include "rollguard/agent/log_format.h"

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include "rollguard/agent/json_writer.h"

namespace rollguard::agent {

namespace {

class JsonLogFormatter final : public spdlog::formatter {
public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        const std::string line =
            formatJsonLogRecord(msg.time, logLevelName(static_cast<int>(msg.level)),
                                std::string_view(msg.logger_name.data(), msg.logger_name.size()),
                                std::string_view(msg.payload.data(), msg.payload.size()));
        dest.append(line.data(), line.data() + line.size());
    }
    std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonLogFormatter>(); }
};

/// `%*`: the syslog priority prefix journald reads off each line ("<3>" for error).
class JournalPriorityFlag final : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
        char priority = '6';
        switch (msg.level) {
            case spdlog::level::trace:
            case spdlog::level::debug:
                priority = '7';
                break;
            case spdlog::level::info:
                priority = '6';
                break;
            case spdlog::level::warn:
                priority = '4';
                break;
            case spdlog::level::err:
                priority = '3';
                break;
            default:
                priority = '2';
                break;
        }
        const std::array<char, 3> prefix{'<', priority, '>'};
        dest.append(prefix.data(), prefix.data() + prefix.size());
    }
    std::unique_ptr<spdlog::custom_flag_formatter> clone() const override {
        return std::make_unique<JournalPriorityFlag>();
    }
};

}  // namespace

std::string_view logFormatName(LogFormat format) {
    return format == LogFormat::Json ? "json" : "text";
}

std::string_view logLevelName(int level) {
    switch (level) {
        case spdlog::level::trace:
            return "trace";
        case spdlog::level::debug:
            return "debug";
        case spdlog::level::info:
            return "info";
        case spdlog::level::warn:
            return "warn";
        case spdlog::level::err:
            return "error";
        case spdlog::level::critical:
            return "critical";
        case spdlog::level::off:
            return "off";
        default:
            return "unknown";
    }
}

std::string formatJsonLogRecord(std::chrono::system_clock::time_point ts, std::string_view level,
                                std::string_view logger, std::string_view msg) {
    std::string out;
    out.reserve(64 + msg.size());
    out += "{\"ts\":\"";
    out += formatRfc3339Local(ts);
    out += "\",\"level\":";
    appendJsonString(out, level);
    out += ",\"msg\":";
    appendJsonString(out, msg);
    out += ",\"logger\":";
    appendJsonString(out, logger);
    out += "}\n";
    return out;
}

std::unique_ptr<spdlog::formatter> makeLogFormatter(LogFormat format, bool journal) {
    if (format == LogFormat::Json) {
        return std::make_unique<JsonLogFormatter>();
    }
    auto text = std::make_unique<spdlog::pattern_formatter>();
    if (journal) {
        text->add_flag<JournalPriorityFlag>('*').set_pattern("%*%^%-5l%$ %v");
    } else {
        text->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%-5l%$ %v");
    }
    return text;
}

bool isJournalStream(const char* journal_stream, int fd) {
    if (journal_stream == nullptr) {
        return false;
    }
    const std::string_view value(journal_stream);
    const auto colon = value.find(':');
    if (colon == std::string_view::npos) {
        return false;
    }
    unsigned long long dev = 0;
    unsigned long long ino = 0;
    const char* dev_end = value.data() + colon;
    const char* ino_end = value.data() + value.size();
    const auto d = std::from_chars(value.data(), dev_end, dev);
    const auto i = std::from_chars(dev_end + 1, ino_end, ino);
    if (d.ec != std::errc{} || d.ptr != dev_end || i.ec != std::errc{} || i.ptr != ino_end || colon == 0 ||
        colon + 1 == value.size()) {
        return false;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        return false;
    }
    return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

bool stderrIsJournal() {
    return isJournalStream(std::getenv("JOURNAL_STREAM"), STDERR_FILENO);
}

}  // namespace rollguard::agent
