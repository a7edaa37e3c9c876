// The breach as hooks see it: the generic JSON body and the script environment.
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>

#include "hooks/hooks_internal.h"
#include "rollguard/agent/hooks.h"

namespace rollguard::agent {
namespace detail {

std::string formatDouble(double value, bool json) {
    if (std::isnan(value)) {
        return json ? "null" : "NaN";
    }
    if (std::isinf(value)) {
        if (json) {
            return "null";
        }
        return value > 0 ? "+Inf" : "-Inf";
    }
    std::array<char, 64> buf{};
    auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value);
    if (ec != std::errc{}) {
        return json ? "null" : "NaN";  // cannot happen with 64 bytes; stay valid anyway
    }
    return std::string(buf.data(), end);
}

std::string formatRfc3339(rules::TimePoint t) {
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
    if (::gmtime_r(&secs, &tm) == nullptr) {
        return "1970-01-01T00:00:00.000Z";
    }
    std::array<char, 64> buf{};
    std::snprintf(buf.data(), buf.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
    return buf.data();
}

std::string formatSeconds(std::chrono::nanoseconds d) {
    return formatDouble(std::chrono::duration<double>(d).count(), false) + "s";
}

std::chrono::milliseconds elapsedSince(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

std::string trimText(std::string_view text) {
    constexpr std::string_view kSpace = " \t\r\n\f\v";
    const auto first = text.find_first_not_of(kSpace);
    if (first == std::string_view::npos) {
        return {};
    }
    const auto last = text.find_last_not_of(kSpace);
    return std::string(text.substr(first, last - first + 1));
}

}  // namespace detail

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

// Strings come from configs and log lines: anything may be in them. Invalid UTF-8
// becomes U+FFFD so that receivers always get a parseable body.
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

class JsonObjectWriter {
public:
    void key(std::string_view k) {
        out_ += first_ ? "{" : ",";
        first_ = false;
        appendJsonString(out_, k);
        out_ += ':';
    }
    void string(std::string_view k, std::string_view v) {
        key(k);
        appendJsonString(out_, v);
    }
    void raw(std::string_view k, std::string_view v) {
        key(k);
        out_ += v;
    }
    std::string finish() {
        out_ += first_ ? "{}" : "}";
        return std::move(out_);
    }

private:
    std::string out_;
    bool first_ = true;
};

double seconds(std::chrono::nanoseconds d) {
    return std::chrono::duration<double>(d).count();
}

}  // namespace

std::string breachToJson(const BreachEvent& event) {
    JsonObjectWriter w;
    w.string("rule", event.rule);
    w.string("severity", event.severity);
    w.string("state", event.state);
    w.string("source", event.source);
    w.string("metric", event.metric);
    w.raw("value", detail::formatDouble(event.value, true));
    w.raw("threshold", detail::formatDouble(event.threshold, true));
    w.string("comparison", event.comparison);
    w.raw("samples", std::to_string(event.samples));
    w.raw("window_seconds", detail::formatDouble(seconds(event.window), true));
    w.raw("for_seconds", detail::formatDouble(seconds(event.for_), true));
    w.string("since", detail::formatRfc3339(event.since));
    w.string("fired_at", detail::formatRfc3339(event.fired_at));
    w.string("host", event.host);
    w.string("summary", event.summary);
    w.string("description", event.description);
    return w.finish();
}

std::vector<std::pair<std::string, std::string>> breachToEnv(const BreachEvent& event) {
    return {
        {"ROLLGUARD_RULE", event.rule},
        {"ROLLGUARD_SEVERITY", event.severity},
        {"ROLLGUARD_STATE", event.state},
        {"ROLLGUARD_SOURCE", event.source},
        {"ROLLGUARD_METRIC", event.metric},
        {"ROLLGUARD_VALUE", detail::formatDouble(event.value, false)},
        {"ROLLGUARD_THRESHOLD", detail::formatDouble(event.threshold, false)},
        {"ROLLGUARD_COMPARISON", event.comparison},
        {"ROLLGUARD_SAMPLES", std::to_string(event.samples)},
        {"ROLLGUARD_WINDOW_SECONDS", detail::formatDouble(seconds(event.window), false)},
        {"ROLLGUARD_FOR_SECONDS", detail::formatDouble(seconds(event.for_), false)},
        {"ROLLGUARD_SINCE", detail::formatRfc3339(event.since)},
        {"ROLLGUARD_FIRED_AT", detail::formatRfc3339(event.fired_at)},
        {"ROLLGUARD_HOST", event.host},
        {"ROLLGUARD_SUMMARY", event.summary},
    };
}

}  // namespace rollguard::agent
