#include "rollguard/agent/json_writer.h"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace rollguard::agent {

namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is invalid
// (overlong, surrogate, beyond U+10FFFF, truncated).
std::size_t utf8SequenceLength(std::string_view s, std::size_t i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    auto cont = [&](std::size_t k) {
        return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    };
    if (b0 < 0x80) {
        return 1;
    }
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        return cont(1) ? 2 : 0;
    }
    if (b0 >= 0xE0 && b0 <= 0xEF) {
        if (!cont(1) || !cont(2)) {
            return 0;
        }
        const auto b1 = static_cast<unsigned char>(s[i + 1]);
        if ((b0 == 0xE0 && b1 < 0xA0) || (b0 == 0xED && b1 >= 0xA0)) {
            return 0;
        }
        return 3;
    }
    if (b0 >= 0xF0 && b0 <= 0xF4) {
        if (!cont(1) || !cont(2) || !cont(3)) {
            return 0;
        }
        const auto b1 = static_cast<unsigned char>(s[i + 1]);
        if ((b0 == 0xF0 && b1 < 0x90) || (b0 == 0xF4 && b1 >= 0x90)) {
            return 0;
        }
        return 4;
    }
    return 0;
}

}  // namespace

void appendJsonString(std::string& out, std::string_view s) {
    out += '"';
    for (std::size_t i = 0; i < s.size();) {
        const char c = s[i];
        switch (c) {
            case '"':
                out += "\\\"";
                ++i;
                continue;
            case '\\':
                out += "\\\\";
                ++i;
                continue;
            case '\n':
                out += "\\n";
                ++i;
                continue;
            case '\r':
                out += "\\r";
                ++i;
                continue;
            case '\t':
                out += "\\t";
                ++i;
                continue;
            case '\b':
                out += "\\b";
                ++i;
                continue;
            case '\f':
                out += "\\f";
                ++i;
                continue;
            default:
                break;
        }
        const auto uc = static_cast<unsigned char>(c);
        if (uc < 0x20 || uc == 0x7F) {
            std::array<char, 8> buf{};
            std::snprintf(buf.data(), buf.size(), "\\u%04x", static_cast<unsigned>(uc));
            out += buf.data();
            ++i;
            continue;
        }
        const std::size_t len = utf8SequenceLength(s, i);
        if (len == 0) {
            out += "\\ufffd";
            ++i;
            continue;
        }
        out.append(s.substr(i, len));
        i += len;
    }
    out += '"';
}

void JsonWriter::separate() {
    if (after_key_) {
        after_key_ = false;
        return;
    }
    if (!has_items_.empty()) {
        if (has_items_.back()) {
            out_.push_back(',');
        }
        has_items_.back() = true;
    }
}

JsonWriter& JsonWriter::beginObject() {
    separate();
    out_.push_back('{');
    has_items_.push_back(false);
    return *this;
}

JsonWriter& JsonWriter::endObject() {
    out_.push_back('}');
    has_items_.pop_back();
    return *this;
}

JsonWriter& JsonWriter::beginArray() {
    separate();
    out_.push_back('[');
    has_items_.push_back(false);
    return *this;
}

JsonWriter& JsonWriter::endArray() {
    out_.push_back(']');
    has_items_.pop_back();
    return *this;
}

JsonWriter& JsonWriter::key(std::string_view name) {
    separate();
    appendJsonString(out_, name);
    out_.push_back(':');
    after_key_ = true;
    return *this;
}

JsonWriter& JsonWriter::value(std::string_view s) {
    separate();
    appendJsonString(out_, s);
    return *this;
}

JsonWriter& JsonWriter::value(double d) {
    if (!std::isfinite(d)) {
        return null();
    }
    separate();
    char buf[64];
    const auto res = std::to_chars(buf, buf + sizeof(buf), d);
    out_.append(buf, res.ptr);
    return *this;
}

JsonWriter& JsonWriter::value(std::int64_t i) {
    separate();
    out_ += std::to_string(i);
    return *this;
}

JsonWriter& JsonWriter::value(std::uint64_t u) {
    separate();
    out_ += std::to_string(u);
    return *this;
}

JsonWriter& JsonWriter::value(bool b) {
    separate();
    out_ += b ? "true" : "false";
    return *this;
}

JsonWriter& JsonWriter::null() {
    separate();
    out_ += "null";
    return *this;
}

JsonWriter& JsonWriter::raw(std::string_view json) {
    separate();
    out_ += json;
    return *this;
}

namespace {

/// RFC 3339 with milliseconds: UTC ("...Z") or the local zone with its offset.
std::string formatTime(rules::TimePoint t, bool local) {
    using namespace std::chrono;
    // floor, not truncation: times before 1970 must still print the right second.
    const auto ms = floor<milliseconds>(t.time_since_epoch()).count();
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    long long millis = ms % 1000;
    if (millis < 0) {
        millis += 1000;
        secs -= 1;
    }
    std::tm tm{};
    if ((local ? ::localtime_r(&secs, &tm) : ::gmtime_r(&secs, &tm)) == nullptr) {
        return local ? "1970-01-01T00:00:00.000+00:00" : "1970-01-01T00:00:00.000Z";
    }
    std::array<char, 64> buf{};
    const int n = std::snprintf(buf.data(), buf.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%03lld", tm.tm_year + 1900,
                                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
    std::string out(buf.data(), static_cast<std::size_t>(n));
    if (!local) {
        return out + "Z";
    }
    const long offset_min = tm.tm_gmtoff / 60;
    const long abs_min = offset_min < 0 ? -offset_min : offset_min;
    std::snprintf(buf.data(), buf.size(), "%c%02ld:%02ld", offset_min < 0 ? '-' : '+', abs_min / 60, abs_min % 60);
    return out + buf.data();
}

}  // namespace

std::string formatRfc3339(rules::TimePoint t) {
    return formatTime(t, false);
}

std::string formatRfc3339Local(rules::TimePoint t) {
    return formatTime(t, true);
}

}  // namespace rollguard::agent
