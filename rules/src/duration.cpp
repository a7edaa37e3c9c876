#include "rollguard/rules/duration.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>

namespace rollguard::rules {

namespace {

struct Unit {
    std::string_view name;
    std::int64_t nanos;
};

// Longest names first so that "ms" is not read as "m" followed by garbage.
constexpr std::array<Unit, 9> kUnits{{
    {"ns", 1},
    {"us", 1'000},
    {"\xC2\xB5s", 1'000},  // U+00B5 MICRO SIGN
    {"\xCE\xBCs", 1'000},  // U+03BC GREEK SMALL LETTER MU
    {"ms", 1'000'000},
    {"s", 1'000'000'000},
    {"m", 60'000'000'000},
    {"h", 3'600'000'000'000},
    {"d", 86'400'000'000'000},
}};

bool isDigit(char c) {
    return c >= '0' && c <= '9';
}

/// Matches the unit at the start of `rest`; prefers the longest name.
const Unit* matchUnit(std::string_view rest) {
    const Unit* best = nullptr;
    for (const auto& u : kUnits) {
        if (rest.substr(0, u.name.size()) == u.name && (best == nullptr || u.name.size() > best->name.size())) {
            best = &u;
        }
    }
    return best;
}

/// Removes trailing zeros of a decimal fraction and then a dangling '.'.
void trimFraction(std::string& s) {
    if (s.find('.') == std::string::npos) {
        return;
    }
    while (!s.empty() && s.back() == '0') {
        s.pop_back();
    }
    if (!s.empty() && s.back() == '.') {
        s.pop_back();
    }
}

/// `value / unit` written exactly as a decimal ("1.5" for 1500 / 1000).
std::string exactQuotient(std::int64_t value, std::int64_t unit) {
    std::string out = std::to_string(value / unit);
    std::int64_t rem = value % unit;
    if (rem != 0) {
        out += '.';
        // unit is a power of ten, so the fraction terminates within its digits.
        for (std::int64_t scale = unit / 10; scale > 0 && rem != 0; scale /= 10) {
            out += static_cast<char>('0' + rem / scale);
            rem %= scale;
        }
    }
    return out;
}

}  // namespace

std::optional<std::chrono::nanoseconds> parseDuration(std::string_view text) {
    if (text == "0") {
        return std::chrono::nanoseconds{0};
    }
    if (text.empty()) {
        return std::nullopt;
    }
    std::int64_t total = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::int64_t whole = 0;
        bool any_digit = false;
        while (pos < text.size() && isDigit(text[pos])) {
            if (__builtin_mul_overflow(whole, 10, &whole) || __builtin_add_overflow(whole, text[pos] - '0', &whole)) {
                return std::nullopt;
            }
            any_digit = true;
            ++pos;
        }
        // Up to 9 fractional digits are kept: enough for any unit down to ns, and the
        // products below stay inside 64 bits.
        std::int64_t frac = 0;
        std::int64_t frac_scale = 1;
        if (pos < text.size() && text[pos] == '.') {
            ++pos;
            while (pos < text.size() && isDigit(text[pos])) {
                if (frac_scale < 1'000'000'000) {
                    frac = frac * 10 + (text[pos] - '0');
                    frac_scale *= 10;
                }
                any_digit = true;
                ++pos;
            }
        }
        if (!any_digit) {
            return std::nullopt;
        }
        const Unit* unit = matchUnit(text.substr(pos));
        if (unit == nullptr) {
            return std::nullopt;
        }
        pos += unit->name.size();

        std::int64_t term = 0;
        if (__builtin_mul_overflow(whole, unit->nanos, &term)) {
            return std::nullopt;
        }
        // frac / frac_scale * nanos, exactly: split nanos into quotient and remainder by
        // frac_scale so that no product exceeds 64 bits.
        const std::int64_t q = unit->nanos / frac_scale;
        const std::int64_t r = unit->nanos % frac_scale;
        const std::int64_t frac_nanos = frac * q + (frac * r) / frac_scale;
        if (__builtin_add_overflow(term, frac_nanos, &term) || __builtin_add_overflow(total, term, &total)) {
            return std::nullopt;
        }
    }
    return std::chrono::nanoseconds{total};
}

std::string formatDuration(std::chrono::nanoseconds d) {
    std::int64_t ns = d.count();
    if (ns == 0) {
        return "0s";
    }
    std::string out;
    if (ns < 0) {
        if (ns == std::numeric_limits<std::int64_t>::min()) {
            // Cannot be negated; not a duration anyone configures.
            return "-" + exactQuotient(std::numeric_limits<std::int64_t>::max(), 1'000'000'000) + "s";
        }
        out = "-";
        ns = -ns;
    }
    // Under a second: the largest sub-second unit that keeps a whole part ("1.5ms", "250us").
    if (ns < 1'000'000'000) {
        if (ns >= 1'000'000) {
            return out + exactQuotient(ns, 1'000'000) + "ms";
        }
        if (ns >= 1'000) {
            return out + exactQuotient(ns, 1'000) + "us";
        }
        return out + std::to_string(ns) + "ns";
    }
    constexpr std::array<Unit, 3> big{{{"d", 86'400'000'000'000}, {"h", 3'600'000'000'000}, {"m", 60'000'000'000}}};
    for (const auto& u : big) {
        if (ns >= u.nanos) {
            out += std::to_string(ns / u.nanos);
            out += u.name;
            ns %= u.nanos;
        }
    }
    if (ns != 0) {
        out += exactQuotient(ns, 1'000'000'000) + "s";
    }
    return out;
}

std::string formatSeconds(double seconds) {
    if (std::isnan(seconds)) {
        return "NaN";
    }
    if (std::isinf(seconds)) {
        return seconds > 0 ? "+Inf" : "-Inf";
    }
    if (seconds == 0.0) {
        return "0s";
    }
    std::string sign = seconds < 0 ? "-" : "";
    double v = std::fabs(seconds);
    const char* unit = "s";
    if (v < 1e-6) {
        v *= 1e9;
        unit = "ns";
    } else if (v < 1e-3) {
        v *= 1e6;
        unit = "us";
    } else if (v < 1.0) {
        v *= 1e3;
        unit = "ms";
    }
    // About three significant digits: what a human compares at a glance.
    const int decimals = v >= 100.0 ? 0 : (v >= 10.0 ? 1 : 2);
    std::array<char, 64> buf{};
    std::snprintf(buf.data(), buf.size(), "%.*f", decimals, v);
    std::string num(buf.data());
    trimFraction(num);
    return sign + num + unit;
}

}  // namespace rollguard::rules
