#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <simdjson.h>

#include "rollguard/agent/log_source.h"

// What this parser validates, given that simdjson's On-Demand API is lazy:
//  - the whole line goes through simdjson's stage 1 (UTF-8, unterminated strings);
//  - the root must be an object, every top-level key and separator is walked, so a
//    truncated line ("{"a":1,"b":2"), missing commas or unbalanced brackets are caught,
//    and anything after the closing brace ("{..}{..}", "{..} x") is rejected;
//  - the values of the latency fields and of every field an error predicate names are
//    fully parsed;
//  - invalid UTF-8 anywhere in the line fails stage 1; only then is the line run through
//    simdjson::validate_utf8 to tell InvalidUtf8 from other garbage, so valid lines never
//    pay for a second validation.
// What it does not validate: the contents of values it never reads. A malformed number
// or escape inside an unvisited value ({"bytes": 12x3}) passes; brackets inside skipped
// nested values are only counted, not matched by kind. That is the price of not parsing
// fields nobody asked for, and it never yields a wrong latency or error flag.

namespace rollguard::agent {

namespace sj = simdjson;
namespace od = simdjson::ondemand;

const char* toString(BadLineReason r) {
    switch (r) {
        case BadLineReason::InvalidJson:
            return "invalid_json";
        case BadLineReason::NotAnObject:
            return "not_an_object";
        case BadLineReason::BadLatency:
            return "bad_latency";
        case BadLineReason::TooLong:
            return "too_long";
        case BadLineReason::InvalidUtf8:
            return "invalid_utf8";
        case BadLineReason::BadTimestamp:
            return "bad_timestamp";
    }
    return "unknown";
}

namespace {

double secondsPerUnit(LatencyUnit unit) {
    switch (unit) {
        case LatencyUnit::Nanoseconds:
            return 1e-9;
        case LatencyUnit::Microseconds:
            return 1e-6;
        case LatencyUnit::Milliseconds:
            return 1e-3;
        case LatencyUnit::Seconds:
            return 1.0;
    }
    return 1e-3;
}

std::vector<std::string> splitFieldPath(const std::string& path) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (true) {
        const std::size_t dot = path.find('.', start);
        out.push_back(path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
        if (dot == std::string::npos) {
            break;
        }
        start = dot + 1;
    }
    return out;
}

bool isSpace(char c) { return c == ' ' || c == '\t'; }

std::string_view trimBlanks(std::string_view s) {
    while (!s.empty() && isSpace(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && isSpace(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

/// Parses a whole string as a finite double; nothing may follow the number.
std::optional<double> parseNumber(std::string_view s) {
    s = trimBlanks(s);
    double v = 0;
    const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || ptr != s.data() + s.size() || !std::isfinite(v)) {
        return std::nullopt;
    }
    return v;
}

/// A latency written as a string: "12.5ms", "1.2s", "350us", "800ns", Go's "1m3.5s", or a
/// bare number in `default_scale` seconds per unit. Local rather than rules::parseDuration
/// because it runs per log line: no allocation, fractional terms, and a bare number allowed.
std::optional<double> parseLatencyString(std::string_view s, double default_scale) {
    s = trimBlanks(s);
    if (s.empty()) {
        return std::nullopt;
    }
    double total = 0;
    bool first = true;
    const char* p = s.data();
    const char* end = s.data() + s.size();
    while (p < end) {
        double v = 0;
        const auto [num_end, ec] = std::from_chars(p, end, v, std::chars_format::fixed);
        if (ec != std::errc{} || !std::isfinite(v) || v < 0 || std::signbit(v)) {
            return std::nullopt;
        }
        p = num_end;
        while (p < end && isSpace(*p)) {
            ++p;
        }
        const char* unit_begin = p;
        while (p < end && !(*p >= '0' && *p <= '9') && *p != '.' && !isSpace(*p)) {
            ++p;
        }
        const std::string_view unit(unit_begin, static_cast<std::size_t>(p - unit_begin));
        double scale = 0;
        if (unit.empty()) {
            // A bare number only on its own: "12.5" uses the configured unit, "1m30" is junk.
            if (!first || p != end) {
                return std::nullopt;
            }
            scale = default_scale;
        } else if (unit == "ns") {
            scale = 1e-9;
        } else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") {  // µ and μ
            scale = 1e-6;
        } else if (unit == "ms") {
            scale = 1e-3;
        } else if (unit == "s") {
            scale = 1.0;
        } else if (unit == "m") {
            scale = 60.0;
        } else if (unit == "h") {
            scale = 3600.0;
        } else {
            return std::nullopt;
        }
        total += v * scale;
        first = false;
        while (p < end && isSpace(*p)) {
            ++p;
        }
    }
    if (!std::isfinite(total)) {
        return std::nullopt;
    }
    return total;
}

/// One field's value as read from the document, before interpretation.
struct Scalar {
    enum class Kind { Missing, Null, Number, String, Bool, Container, Unreadable };
    Kind kind = Kind::Missing;
    double number = 0;
    std::string_view string;
    bool boolean = false;
};

/// A field the parser looks for: a dotted path and where its value lands.
struct Want {
    std::vector<std::string> path;
    bool exact = false;       ///< keep integers exact (epoch timestamps in ns do not fit a double)
    bool label = false;       ///< a label reads it: a number's JSON text is kept in `raw`
    bool special = false;     ///< exact || label: read off the common path
    std::string_view raw;     ///< for a label's number: its JSON text
    bool is_integer = false;  ///< for an exact want whose value is an integer: it is in `integer`
    std::int64_t integer = 0;
    Scalar value;
};

[[gnu::always_inline]] inline Scalar readScalar(od::value& v, od::json_type type) {
    Scalar s;
    switch (type) {
        case od::json_type::number:
            s.kind = v.get_double().get(s.number) ? Scalar::Kind::Unreadable : Scalar::Kind::Number;
            break;
        case od::json_type::string:
            s.kind = v.get_string().get(s.string) ? Scalar::Kind::Unreadable : Scalar::Kind::String;
            break;
        case od::json_type::boolean:
            s.kind = v.get_bool().get(s.boolean) ? Scalar::Kind::Unreadable : Scalar::Kind::Bool;
            break;
        case od::json_type::null: {
            bool is_null = false;
            s.kind = (v.is_null().get(is_null) || !is_null) ? Scalar::Kind::Unreadable : Scalar::Kind::Null;
            break;
        }
        case od::json_type::array:
        case od::json_type::object:
            s.kind = Scalar::Kind::Container;
            break;
    }
    return s;
}

/// A number kept exact when it is an integer; off the common path.
[[gnu::noinline]] void readExactNumber(od::value& v, Want& w) {
    od::number num;
    if (v.get_number().get(num)) {
        w.value.kind = Scalar::Kind::Unreadable;
        return;
    }
    w.value.kind = Scalar::Kind::Number;
    w.value.number = num.as_double();
    w.is_integer = num.is_int64();
    if (w.is_integer) {
        w.integer = num.get_int64();
    }
}

/// A number wanted exactly and/or as text (labels); off the common path.
[[gnu::noinline]] void readSpecialNumber(od::value& v, Want& w) {
    if (w.label) {
        std::string_view raw = v.raw_json_token();  // does not consume the value
        while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\t' || raw.back() == '\n' || raw.back() == '\r')) {
            raw.remove_suffix(1);
        }
        w.raw = raw;
    }
    if (w.exact) {
        readExactNumber(v, w);
    } else {
        w.value = readScalar(v, od::json_type::number);
    }
}

/// Stores the value `v` of type `type` into `w`.
[[gnu::always_inline]] inline void readInto(od::value& v, od::json_type type, Want& w) {
    if (w.special && type == od::json_type::number) {
        readSpecialNumber(v, w);
    } else {
        w.value = readScalar(v, type);
    }
}

/// Resolves `wants[0..n)` against `v`, the value at path[0..depth) of each of them. The
/// wants are sorted by path and distinct, so the ones ending here come first and the
/// ones under the same key are adjacent. Nested objects are searched with
/// find_field_unordered, which is order-independent and may be asked again on the same
/// object; each key is looked up once because a value can be consumed only once.
/// Returns false when the object is malformed (a lookup failed other than by a missing
/// key): simdjson has then abandoned the document's iterator, so nothing more may be read
/// from it, not even the next field of an enclosing object (that dereferenced a null
/// parser; found by fuzz_line_parser), and the line is invalid JSON.
[[nodiscard]] bool resolve(od::value v, Want* const* wants, int n, std::size_t depth) {
    od::json_type type{};
    if (v.type().get(type)) {
        for (int i = 0; i < n; ++i) {
            wants[i]->value.kind = Scalar::Kind::Unreadable;
        }
        return true;
    }
    const bool any_inner = wants[n - 1]->path.size() > depth;
    if (type == od::json_type::object && any_inner) {
        od::object obj;
        if (v.get_object().get(obj)) {
            return false;
        }
        int i = 0;
        while (i < n) {
            Want* w = wants[i];
            if (w->path.size() == depth) {
                w->value.kind = Scalar::Kind::Container;
                ++i;
                continue;
            }
            int j = i + 1;
            while (j < n && wants[j]->path[depth] == w->path[depth]) {
                ++j;
            }
            od::value child;
            const auto err = obj.find_field_unordered(w->path[depth]).get(child);
            if (err == sj::NO_SUCH_FIELD) {
                // stay Missing
            } else if (err || !resolve(child, wants + i, j - i, depth + 1)) {
                return false;
            }
            i = j;
        }
        return true;
    }
    // Only the first want can end here (paths are distinct); the others wanted a key
    // inside, but this is not an object: for them the field is missing.
    if (wants[0]->path.size() == depth) {
        readInto(v, type, *wants[0]);
    }
    return true;
}

/// A number, or a string holding one (status "503").
std::optional<double> numberOf(const Scalar& s) {
    if (s.kind == Scalar::Kind::Number) {
        return s.number;
    }
    if (s.kind == Scalar::Kind::String) {
        return parseNumber(s.string);
    }
    return std::nullopt;
}

/// A point in time as whole seconds since the epoch plus nanoseconds in [0, 1e9), so
/// that nanosecond timestamps subtract exactly.
struct Instant {
    std::int64_t seconds = 0;
    std::int64_t nanos = 0;
};

// Epochs beyond ±31,000 years are junk, and bounding them keeps the arithmetic exact.
constexpr std::int64_t kMaxEpochSeconds = 1'000'000'000'000;
constexpr std::int64_t kNanosPerSecond = 1'000'000'000;

std::int64_t unitsPerSecond(LatencyUnit unit) {
    switch (unit) {
        case LatencyUnit::Nanoseconds:
            return 1'000'000'000;
        case LatencyUnit::Microseconds:
            return 1'000'000;
        case LatencyUnit::Milliseconds:
            return 1'000;
        case LatencyUnit::Seconds:
            return 1;
    }
    return 1;
}

std::optional<Instant> instantFromInteger(std::int64_t v, std::int64_t per_second) {
    std::int64_t seconds = v / per_second;
    std::int64_t rest = v % per_second;
    if (rest < 0) {
        rest += per_second;
        --seconds;
    }
    if (seconds > kMaxEpochSeconds || seconds < -kMaxEpochSeconds) {
        return std::nullopt;
    }
    return Instant{seconds, rest * (kNanosPerSecond / per_second)};
}

std::optional<Instant> instantFromDouble(double v, std::int64_t per_second) {
    // 9e18 < 2^63: the whole part converts to int64 without overflow.
    if (!std::isfinite(v) || std::fabs(v) > 9e18) {
        return std::nullopt;
    }
    const double whole = std::floor(v);
    auto t = instantFromInteger(static_cast<std::int64_t>(whole), per_second);
    if (!t) {
        return t;
    }
    t->nanos += std::llround((v - whole) * static_cast<double>(kNanosPerSecond / per_second));
    if (t->nanos >= kNanosPerSecond) {
        t->nanos -= kNanosPerSecond;
        ++t->seconds;
    }
    return t;
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
std::int64_t daysFromCivil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2 ? 1 : 0;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

unsigned daysInMonth(std::int64_t y, unsigned m) {
    static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : kDays[m - 1];
}

/// Two ASCII digits at p, or -1.
int twoDigits(const char* p) {
    const auto a = static_cast<unsigned>(p[0] - '0');
    const auto b = static_cast<unsigned>(p[1] - '0');
    return a <= 9 && b <= 9 ? static_cast<int>(a * 10 + b) : -1;
}

/// RFC 3339: "2026-11-23T10:00:00Z", "...T10:00:00.123456789+02:00", 't'/'z' in lower
/// case, a space for the 'T' (RFC 3339 section 5.6 allows it). Fractions of any length
/// (digits past nanoseconds are dropped); the zone is required; 23:59:60 is accepted as
/// the second after 23:59:59.
std::optional<Instant> parseRfc3339(std::string_view s) {
    if (s.size() < 20) {
        return std::nullopt;
    }
    const char* p = s.data();
    const int century = twoDigits(p);
    const int year2 = twoDigits(p + 2);
    const int month = twoDigits(p + 5);
    const int day = twoDigits(p + 8);
    const int hour = twoDigits(p + 11);
    const int minute = twoDigits(p + 14);
    const int second = twoDigits(p + 17);
    const char t = p[10];
    if (century < 0 || year2 < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 ||
        minute > 59 || second < 0 || second > 60 || p[4] != '-' || p[7] != '-' || p[13] != ':' || p[16] != ':' ||
        (t != 'T' && t != 't' && t != ' ')) {
        return std::nullopt;
    }
    const std::int64_t year = century * 100 + year2;
    if (static_cast<unsigned>(day) > daysInMonth(year, static_cast<unsigned>(month))) {
        return std::nullopt;
    }
    std::size_t i = 19;
    std::int64_t nanos = 0;
    if (s[i] == '.') {
        ++i;
        int digits = 0;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
            if (digits < 9) {
                nanos = nanos * 10 + (s[i] - '0');
            }
            ++digits;
            ++i;
        }
        if (digits == 0) {
            return std::nullopt;
        }
        for (int d = digits; d < 9; ++d) {
            nanos *= 10;
        }
    }
    if (i >= s.size()) {
        return std::nullopt;  // no zone
    }
    std::int64_t offset = 0;
    if (s[i] == 'Z' || s[i] == 'z') {
        ++i;
    } else if (s[i] == '+' || s[i] == '-') {
        if (s.size() - i != 6 || s[i + 3] != ':') {
            return std::nullopt;
        }
        const int oh = twoDigits(p + i + 1);
        const int om = twoDigits(p + i + 4);
        if (oh < 0 || oh > 23 || om < 0 || om > 59) {
            return std::nullopt;
        }
        offset = (s[i] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
        i += 6;
    } else {
        return std::nullopt;
    }
    if (i != s.size()) {
        return std::nullopt;
    }
    const std::int64_t days = daysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
    return Instant{days * 86400 + hour * 3600 + minute * 60 + second - offset, nanos};
}

/// `t` as int64 nanoseconds since the epoch, which reach the year 2262; later (or before
/// 1678) is junk and nullopt, never an overflow.
std::optional<std::int64_t> epochNanos(const Instant& t) {
    constexpr std::int64_t kMaxSeconds = 9'000'000'000;
    if (t.seconds > kMaxSeconds || t.seconds < -kMaxSeconds) {
        return std::nullopt;
    }
    return t.seconds * kNanosPerSecond + t.nanos;
}

/// A timestamp field's value: an RFC 3339 string, or an epoch number (or numeric string)
/// in `per_second` units per second.
std::optional<Instant> parseTimestamp(const Want& w, std::int64_t per_second) {
    const Scalar& s = w.value;
    if (s.kind == Scalar::Kind::Number) {
        return w.is_integer ? instantFromInteger(w.integer, per_second) : instantFromDouble(s.number, per_second);
    }
    if (s.kind != Scalar::Kind::String) {
        return std::nullopt;
    }
    if (s.string.size() >= 20 && s.string[4] == '-') {
        return parseRfc3339(s.string);
    }
    const std::string_view text = trimBlanks(s.string);
    std::int64_t integer = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), integer);
    if (ec == std::errc{} && ptr == text.data() + text.size()) {
        return instantFromInteger(integer, per_second);
    }
    if (const auto v = parseNumber(text)) {
        return instantFromDouble(*v, per_second);
    }
    return std::nullopt;
}

/// An error predicate with its fields resolved to wants.
struct Predicate {
    ErrorPredicate::Kind kind = ErrorPredicate::Kind::None;
    Want* want = nullptr;
    double gte = 0;
    std::vector<std::pair<double, double>> ranges;
    std::vector<std::string> in;
    std::vector<Predicate> terms;
};

bool holdsAll(const Predicate& p);
bool holdsAny(const Predicate& p);

/// Inline for the common single test; combinations recurse out of line.
inline bool holds(const Predicate& p) {
    const Scalar* v = p.want != nullptr ? &p.want->value : nullptr;
    switch (p.kind) {
        case ErrorPredicate::Kind::None:
            return false;
        case ErrorPredicate::Kind::NumberAtLeast:
            if (v->kind == Scalar::Kind::Number) {
                return v->number >= p.gte;
            }
            if (v->kind == Scalar::Kind::String) {
                const auto n = parseNumber(v->string);
                return n && *n >= p.gte;
            }
            return false;
        case ErrorPredicate::Kind::NumberInRanges: {
            const auto n = numberOf(*v);
            return n && std::any_of(p.ranges.begin(), p.ranges.end(),
                                    [&](const auto& r) { return *n >= r.first && *n <= r.second; });
        }
        case ErrorPredicate::Kind::StringIn:
            // Exact, case-sensitive match: "ERROR" is not "error" (say both in the config).
            return v->kind == Scalar::Kind::String && std::find(p.in.begin(), p.in.end(), v->string) != p.in.end();
        case ErrorPredicate::Kind::IsTrue:
            return v->kind == Scalar::Kind::Bool && v->boolean;
        case ErrorPredicate::Kind::Present:
            return v->kind != Scalar::Kind::Missing && v->kind != Scalar::Kind::Null;
        case ErrorPredicate::Kind::All:
            return holdsAll(p);
        case ErrorPredicate::Kind::Any:
            return holdsAny(p);
    }
    return false;
}

bool holdsAll(const Predicate& p) {
    return std::all_of(p.terms.begin(), p.terms.end(), [](const Predicate& t) { return holds(t); });
}

bool holdsAny(const Predicate& p) {
    return std::any_of(p.terms.begin(), p.terms.end(), [](const Predicate& t) { return holds(t); });
}

/// Top-level keys and the run of (sorted) wants under each.
struct TopKey {
    std::string key;
    int first = 0;
    int count = 0;
    // For rawKeyIs: the key's length, or npos for a key holding '"' (which a key written
    // without escapes cannot hold; comparing raw bytes would run past the key's end);
    // its first and last up to 8 bytes as words, and the mask of the first word's bytes.
    std::size_t raw_size = std::string::npos;
    std::uint64_t head = 0;
    std::uint64_t tail = 0;
    std::uint64_t mask = 0;
};

std::uint64_t load8(const char* p) {
    std::uint64_t v = 0;
    std::memcpy(&v, p, sizeof v);
    return v;
}

TopKey topKey(const std::string& key, int first) {
    TopKey t;
    t.key = key;
    t.first = first;
    if (key.find('"') == std::string::npos) {
        const std::size_t n = key.size();
        t.raw_size = n;
        std::memcpy(&t.head, key.data(), std::min<std::size_t>(n, 8));
        if (n >= 8) {
            t.tail = load8(key.data() + n - 8);
        }
        t.mask = n >= 8 ? ~0ULL : (1ULL << (8 * n)) - 1;
    }
    return t;
}

/// Whether the key starting at `k` (just after its opening quote, in a buffer padded
/// by at least t.key.size() + 8 bytes) is written exactly as t.key. Only meaningful
/// when the text holds no backslash: then a key is its own unescaped form.
[[gnu::always_inline]] inline bool rawKeyIs(const char* k, const TopKey& t) {
    const std::size_t n = t.raw_size;
    if (n == std::string::npos || k[n] != '"') {
        return false;
    }
    if constexpr (std::endian::native == std::endian::little) {
        if (n <= 8) {
            return (load8(k) & t.mask) == t.head;
        }
        // Two overlapping words cover up to 16 bytes; longer keys compare the middle too.
        return load8(k) == t.head && load8(k + n - 8) == t.tail &&
               (n <= 16 || std::memcmp(k + 8, t.key.data() + 8, n - 16) == 0);
    } else {
        return std::memcmp(k, t.key.data(), n) == 0;
    }
}

}  // namespace

struct LineParser::Impl {
    explicit Impl(const LogSourceConfig& config);

    od::parser parser;
    std::vector<char> buffer;  // the line plus SIMDJSON_PADDING, reused
    std::vector<char> window;  // parseMany: a window of lines plus SIMDJSON_PADDING, reused
    std::vector<ParsedLineOf> many;  // parseMany's results, reused
    std::vector<Want> wants;   // distinct paths, sorted
    std::vector<Want*> order;  // &wants[i]
    std::vector<TopKey> top;
    Want* latency = nullptr;
    Want* start = nullptr;  // latency = end - start
    Want* end = nullptr;
    double default_scale = 1e-3;
    std::int64_t timestamp_per_second = 1;
    Want* event_time = nullptr;  // time = "event": the line's own timestamp
    std::int64_t event_per_second = 1;
    std::vector<Want*> labels;               // per config label, in config order
    std::vector<std::string_view> label_values;  // what ParsedLine::labels shows
    Predicate error;
    /// Bytes of padding after a line or window beyond SIMDJSON_PADDING: rawKeyIs reads
    /// up to the longest top-level key + 8 bytes from the start of any key.
    std::size_t key_padding = 8;

    ParsedLine parse(std::string_view line);
    std::span<const ParsedLineOf> parseMany(std::string_view lines);
    /// Parses many[first, first + count) (their lines are consecutive in the input,
    /// starting at `text`, `size` bytes with the last newline, followed by `after` more
    /// bytes of input) as one iterate_many stream. Returns how many of these lines, from
    /// `first`, now hold exactly what parse() returns: all of them when the documents are
    /// one object per non-blank line; else those before the first line it cannot vouch
    /// for (the rest of `many` holds junk there).
    std::size_t parseWindow(const char* text, std::size_t size, std::size_t after, std::size_t first,
                            std::size_t count);
    ParsedLine checkScalarRoot(od::document& doc, od::json_type type);
    /// The one place that reads a parsed object: resets every want, walks the top-level
    /// fields and fills the wants. False on a malformed key or value token; the caller
    /// still checks that the walk reached the object's end (depth 0).
    /// `escapes`: the text may hold a backslash, so keys must be unescaped to compare.
    bool readFields(od::object& obj, bool escapes);
    /// The one place that turns the wants read by readFields() into a result.
    ParsedLine evaluate();
    Predicate compile(const ErrorPredicate& p, const std::vector<std::string>& paths);
    bool latencyFromTimestamps(ParsedLine& out) const;
    bool readEventTime(ParsedLine& out) const;
    void readLabels(ParsedLine& out);
    /// parseMany(): copies line i's label values out of the parser's buffers (which the
    /// next document reuses); the views are made when the batch is complete.
    void keepLabels(std::size_t i);

    std::string label_arena;
    std::vector<std::pair<std::size_t, std::size_t>> label_spans;  // (offset, size) in label_arena
    std::vector<std::size_t> label_first;                          // per line: first span, or npos
    std::vector<std::string_view> label_views;
};

void LineParser::Impl::keepLabels(std::size_t i) {
    if (labels.empty() || !many[i].parsed.ok) {
        return;
    }
    label_first[i] = label_spans.size();
    for (const std::string_view v : many[i].parsed.labels) {
        label_spans.emplace_back(label_arena.size(), v.size());
        label_arena.append(v);
    }
}

bool LineParser::Impl::readEventTime(ParsedLine& out) const {
    const auto t = parseTimestamp(*event_time, event_per_second);
    out.event_time_ns = t ? epochNanos(*t) : std::nullopt;
    return out.event_time_ns.has_value();
}

void LineParser::Impl::readLabels(ParsedLine& out) {
    for (std::size_t i = 0; i < labels.size(); ++i) {
        const Want& w = *labels[i];
        std::string_view v;
        switch (w.value.kind) {
            case Scalar::Kind::String:
                v = w.value.string;
                break;
            case Scalar::Kind::Number:
                v = w.raw;
                break;
            case Scalar::Kind::Bool:
                v = w.value.boolean ? "true" : "false";
                break;
            default:
                break;  // missing, null, containers: absent
        }
        label_values[i] = v.size() > kMaxLabelValueBytes ? std::string_view(kOtherLabelValue) : v;
    }
    out.labels = label_values;
}

LineParser::Impl::Impl(const LogSourceConfig& config) {
    // Every field any part of the config reads, each once: one pass over the line
    // resolves them all, then latency and the predicate tree are evaluated.
    std::vector<std::string> paths;
    std::vector<std::string> exact;
    const auto collect = [&](const ErrorPredicate& p, const auto& self) -> void {
        if (p.kind == ErrorPredicate::Kind::All || p.kind == ErrorPredicate::Kind::Any) {
            for (const auto& t : p.terms) {
                self(t, self);
            }
        } else if (p.kind != ErrorPredicate::Kind::None && !p.field.empty()) {
            paths.push_back(p.field);
        }
    };
    collect(config.error, collect);
    for (const auto& l : config.labels) {
        paths.push_back(l.field);
    }
    if (config.time == TimeMode::Event && !config.timestamp.empty()) {
        paths.push_back(config.timestamp);
        event_per_second = unitsPerSecond(config.timestamp_unit);
    }
    if (config.latency) {
        if (!config.latency->field.empty()) {
            paths.push_back(config.latency->field);
            default_scale = secondsPerUnit(config.latency->unit);
        } else if (!config.latency->start_field.empty() && !config.latency->end_field.empty()) {
            paths.push_back(config.latency->start_field);
            paths.push_back(config.latency->end_field);
            exact = {config.latency->start_field, config.latency->end_field};
            timestamp_per_second = unitsPerSecond(config.latency->timestamp_unit);
        }
    }
    std::vector<std::vector<std::string>> split;
    for (const auto& p : paths) {
        split.push_back(splitFieldPath(p));
    }
    std::sort(split.begin(), split.end());
    split.erase(std::unique(split.begin(), split.end()), split.end());
    wants.resize(split.size());
    for (std::size_t i = 0; i < split.size(); ++i) {
        wants[i].path = std::move(split[i]);
    }
    for (auto& w : wants) {
        order.push_back(&w);
    }
    for (std::size_t i = 0; i < wants.size(); ++i) {
        if (top.empty() || top.back().key != wants[i].path.front()) {
            const std::string& key = wants[i].path.front();
            top.push_back(topKey(key, static_cast<int>(i)));
            key_padding = std::max(key_padding, key.size() + 8);
        }
        ++top.back().count;
    }
    const auto find = [&](const std::string& path) -> Want* {
        const auto parts = splitFieldPath(path);
        for (auto& w : wants) {
            if (w.path == parts) {
                return &w;
            }
        }
        return nullptr;
    };
    if (config.latency && !config.latency->field.empty()) {
        latency = find(config.latency->field);
    } else if (!exact.empty()) {
        start = find(exact[0]);
        end = find(exact[1]);
        start->exact = true;
        end->exact = true;
    }
    if (config.time == TimeMode::Event && !config.timestamp.empty()) {
        event_time = find(config.timestamp);
        event_time->exact = true;
    }
    for (const auto& l : config.labels) {
        Want* w = find(l.field);
        w->label = true;
        labels.push_back(w);
    }
    label_values.resize(labels.size());
    for (auto& w : wants) {
        w.special = w.exact || w.label;
    }
    const auto build = [&](const ErrorPredicate& p, const auto& self) -> Predicate {
        Predicate c;
        c.kind = p.kind;
        c.gte = p.gte;
        c.ranges = p.ranges;
        c.in = p.in;
        if (p.kind == ErrorPredicate::Kind::All || p.kind == ErrorPredicate::Kind::Any) {
            for (const auto& t : p.terms) {
                c.terms.push_back(self(t, self));
            }
        } else if (p.kind != ErrorPredicate::Kind::None) {
            c.want = p.field.empty() ? nullptr : find(p.field);
            if (c.want == nullptr) {
                c.kind = ErrorPredicate::Kind::None;  // no field: never an error
            }
        }
        return c;
    };
    error = build(config.error, build);
}

ParsedLine LineParser::Impl::checkScalarRoot(od::document& doc, od::json_type type) {
    // Tell "valid JSON, wrong shape" from garbage such as "nope" (looks like null).
    ParsedLine out;
    bool failed = false;
    switch (type) {
        case od::json_type::array: {
            od::array arr;
            failed = doc.get_array().get(arr) != sj::SUCCESS;
            if (!failed) {
                for (auto el : arr) {
                    if (el.error()) {
                        failed = true;
                        break;
                    }
                }
            }
            break;
        }
        case od::json_type::number: {
            double d = 0;
            failed = doc.get_double().get(d) != sj::SUCCESS;
            break;
        }
        case od::json_type::string: {
            std::string_view s;
            failed = doc.get_string().get(s) != sj::SUCCESS;
            break;
        }
        case od::json_type::boolean: {
            bool b = false;
            failed = doc.get_bool().get(b) != sj::SUCCESS;
            break;
        }
        case od::json_type::null: {
            bool is_null = false;
            failed = doc.is_null().get(is_null) != sj::SUCCESS || !is_null;
            break;
        }
        case od::json_type::object:
            break;
    }
    out.reason = failed ? BadLineReason::InvalidJson : BadLineReason::NotAnObject;
    return out;
}

bool LineParser::Impl::latencyFromTimestamps(ParsedLine& out) const {
    const auto read = [&](const Want& w, std::optional<Instant>& t) {
        if (w.value.kind == Scalar::Kind::Missing || w.value.kind == Scalar::Kind::Null) {
            return true;
        }
        t = parseTimestamp(w, timestamp_per_second);
        return t.has_value();
    };
    std::optional<Instant> t0;
    std::optional<Instant> t1;
    if (!read(*start, t0) || !read(*end, t1)) {
        return false;
    }
    // Without both timestamps (a line logged when a request starts, say) there is no
    // latency, as with a missing latency field.
    if (!t0 || !t1) {
        return true;
    }
    const double seconds = static_cast<double>(t1->seconds - t0->seconds) +
                           static_cast<double>(t1->nanos - t0->nanos) * 1e-9;
    if (seconds < 0) {
        return false;
    }
    out.latency_seconds = seconds;
    return true;
}

namespace {

bool isJsonBlank(std::string_view line) {
    for (const char c : line) {
        if (c != ' ' && c != '\t' && c != '\r') {
            return false;
        }
    }
    return true;
}

}  // namespace

bool LineParser::Impl::readFields(od::object& obj, bool escapes) {
    for (auto& w : wants) {
        w.value = Scalar{};
    }
    // Walk every top-level field (not find_field_unordered at the root): this validates
    // the object's structure to its closing brace in the same pass.
    for (auto result : obj) {
        if (result.error()) {
            return false;
        }
        od::field& field = result.value_unsafe();
        // Keys are compared as written when the text has no backslash at all (then every
        // key is its own unescaped form): unescaping every key of every line into the
        // string buffer cost more than the rest of the walk.
        const TopKey* hit = nullptr;
        if (!escapes) {
            const char* k = field.key().raw();
            for (const TopKey& t : top) {
                if (rawKeyIs(k, t)) {
                    hit = &t;
                    break;
                }
            }
        } else {
            std::string_view key;
            if (field.unescaped_key().get(key)) {
                return false;
            }
            for (const TopKey& t : top) {
                if (t.key == key) {
                    hit = &t;
                    break;
                }
            }
        }
        if (hit == nullptr) {
            continue;
        }
        od::value& v = field.value();
        Want* w = order[static_cast<std::size_t>(hit->first)];
        if (hit->count == 1 && w->path.size() == 1) {
            // The common case, a top-level field: no recursion.
            od::json_type vt{};
            if (v.type().get(vt)) {
                w->value.kind = Scalar::Kind::Unreadable;
            } else {
                readInto(v, vt, *w);
            }
        } else {
            if (!resolve(v, order.data() + hit->first, hit->count, 1)) {
                return false;
            }
        }
    }
    return true;
}

ParsedLine LineParser::Impl::evaluate() {
    ParsedLine out;
    for (const auto& w : wants) {
        if (w.value.kind == Scalar::Kind::Unreadable) {
            return out;  // a token we needed is malformed JSON
        }
    }
    if (latency != nullptr) {
        const Scalar& v = latency->value;
        switch (v.kind) {
            case Scalar::Kind::Missing:
            case Scalar::Kind::Null:  // "duration": null means "no latency", like a missing field
                break;
            case Scalar::Kind::Number:
                if (!(v.number >= 0) || !std::isfinite(v.number)) {
                    out.reason = BadLineReason::BadLatency;
                    return out;
                }
                out.latency_seconds = v.number * default_scale;
                break;
            case Scalar::Kind::String: {
                const auto secs = parseLatencyString(v.string, default_scale);
                if (!secs) {
                    out.reason = BadLineReason::BadLatency;
                    return out;
                }
                out.latency_seconds = *secs;
                break;
            }
            case Scalar::Kind::Bool:
            case Scalar::Kind::Container:
            case Scalar::Kind::Unreadable:
                out.reason = BadLineReason::BadLatency;
                return out;
        }
    } else if (start != nullptr && !latencyFromTimestamps(out)) {
        out.reason = BadLineReason::BadLatency;
        return out;
    }
    if (event_time != nullptr && !readEventTime(out)) {
        out.reason = BadLineReason::BadTimestamp;
        return out;
    }
    if (!labels.empty()) {
        readLabels(out);
    }
    out.error = holds(error);
    out.ok = true;
    return out;
}

ParsedLine LineParser::Impl::parse(std::string_view line) {
    ParsedLine out;
    if (!line.empty() && line.back() == '\r') {
        line.remove_suffix(1);
    }
    const std::size_t padding = sj::SIMDJSON_PADDING + key_padding;
    const std::size_t needed = line.size() + padding;
    if (buffer.size() < needed) {
        buffer.resize(std::max(needed, buffer.size() * 2));
    }
    std::memcpy(buffer.data(), line.data(), line.size());
    // The padding must not look like JSON continuing past the line.
    std::memset(buffer.data() + line.size(), ' ', padding);

    od::document doc;
    if (parser.iterate(buffer.data(), line.size(), buffer.size()).get(doc)) {
        // Stage 1 validates UTF-8 but may report another error first (an unterminated
        // string); only failed lines pay for telling the two apart.
        if (!sj::validate_utf8(line.data(), line.size())) {
            out.reason = BadLineReason::InvalidUtf8;
        }
        return out;  // InvalidJson (empty, unterminated string, ...)
    }
    od::json_type type{};
    if (doc.type().get(type)) {
        return out;
    }
    if (type != od::json_type::object) {
        return checkScalarRoot(doc, type);
    }
    od::object obj;
    if (doc.get_object().get(obj) || !readFields(obj, std::memchr(line.data(), '\\', line.size()) != nullptr)) {
        return out;
    }
    // In a walk that fails (missing comma, truncated line) the loop in readFields just
    // ends; only a document consumed to its end is whole. current_location() reports
    // OUT_OF_BOUNDS exactly when nothing follows the root object.
    if (doc.current_depth() != 0 || doc.current_location().error() != sj::OUT_OF_BOUNDS) {
        return out;
    }
    return evaluate();
}

namespace {

// Lines go to iterate_many in windows of about this many bytes: big enough to spread
// the cost of a stage 1 call over a few hundred lines, small enough to stay in L2 and
// that a bad line (which sends its whole window to the per-line path) costs little.
constexpr std::size_t kWindowBytes = 32 * 1024;

}  // namespace

std::size_t LineParser::Impl::parseWindow(const char* text, std::size_t size, std::size_t after, std::size_t first,
                                          std::size_t count) {
    // iterate_many needs SIMDJSON_PADDING readable bytes after the window (whatever they
    // hold: stage 1 reads only `size` bytes), rawKeyIs key_padding more. Inside the input
    // the following lines are that padding; the input's last window is copied.
    const std::size_t padding = sj::SIMDJSON_PADDING + key_padding;
    const char* json = text;
    if (after < padding) {
        if (window.size() < size + padding) {
            window.resize(size + padding);
        }
        std::memcpy(window.data(), text, size);
        std::memset(window.data() + size, ' ', padding);
        json = window.data();
    }
    const bool escapes = std::memchr(text, '\\', size) != nullptr;
    // One batch for the whole window (stage 1 runs once, in its final mode, over every
    // byte: UTF-8, unescaped control characters and unclosed strings anywhere fail the
    // stream); at least the parser's capacity, so that it is never reallocated.
    const std::size_t batch = std::max({size, kWindowBytes, parser.capacity()});
    od::document_stream stream;
    if (parser.iterate_many(json, size, batch).get(stream)) {
        return 0;
    }
    // The one rule that holds the stream to parse(): a line is taken from the stream only
    // when its document's walk (readFields, the same walk parse() makes) began at the
    // line's first byte, stayed alive, ended at depth 0 and consumed exactly the line's
    // tokens, and the stream then went on exactly as if the line were whole: the next
    // document began at the next non-blank line's first byte or, after the window's last
    // line, the stream ended with nothing left over. Each window ends with a newline, so
    // stage 1 splits no string across lines and gives a line the same tokens as parse()'s
    // own stage 1; the walk over them is the same, and so is its result. (parse() also
    // has On-Demand check that a document's last token is '}'; here the walk itself ends
    // on the root object's '}', the only token that closes it.)
    //
    // Why both the walk's end and the stream's next document: On-Demand skips values it is
    // not asked for by counting brackets, so a document can end elsewhere than its line
    // (`{}\u009}`, `{"":}`, `{"":"":}`, `{"t":{"u31":}}`); and stage 1 of a stream leaves out
    // a tail it takes for an incomplete document, checks it (UTF-8 included) only in a
    // second pass, and a walk that runs off the indexed part reads sentinel positions
    // whose bytes are the input after the window (`{"":"":nul}` before a line that began
    // with '}' looked whole). All of these were found by fuzz_line_parser.
    std::size_t line = first;
    const std::size_t last = first + count;
    const auto nonBlankFrom = [&](std::size_t i) {
        while (i < last && isJsonBlank(many[i].line)) {
            ++i;
        }
        return i;
    };
    // Offsets from `text`, which are offsets in `json` too (the padded copy starts alike).
    const auto firstByte = [&](std::size_t i) {
        const std::string_view l = many[i].line;
        const std::size_t k = l.find_first_not_of(" \t\r");
        return static_cast<std::size_t>(l.data() - text) + k;
    };
    const auto consumedExactly = [&](od::document& doc, std::size_t next) {
        if (!doc.is_alive() || doc.current_depth() != 0) {
            return false;
        }
        const auto at = doc.current_location();
        if (next == last) {
            return at.error() == sj::OUT_OF_BOUNDS;
        }
        return at.error() == sj::SUCCESS && static_cast<std::size_t>(at.value_unsafe() - json) == firstByte(next);
    };
    const auto blanksUpTo = [&](std::size_t stop) {
        for (; line < stop; ++line) {
            many[line].parsed = ParsedLine{};  // what parse() says of a blank line
        }
    };
    blanksUpTo(nonBlankFrom(line));
    // The line read last, until the stream confirms it as above (kNoLine: none). Not a
    // std::optional: g++ 12 at -O1 warns it may be read uninitialized.
    constexpr std::size_t kNoLine = std::numeric_limits<std::size_t>::max();
    std::size_t unconfirmed = kNoLine;
    auto it = stream.begin();
    for (; it != stream.end(); ++it) {
        // The stream is abandoned at the first line it does not vouch for (continuing a
        // stream after an error is not safe); parseMany() sends that line to parse().
        if (line == last || it.current_index() != firstByte(line)) {
            break;
        }
        unconfirmed = kNoLine;
        od::document_reference ref;
        od::json_type type{};
        if ((*it).get(ref) || ref.type().get(type) || type != od::json_type::object) {
            break;  // not-an-object lines are told apart by the per-line path
        }
        od::document& doc = ref;
        od::object obj;
        const std::size_t next = nonBlankFrom(line + 1);
        if (doc.get_object().get(obj) || !readFields(obj, escapes) || !consumedExactly(doc, next)) {
            break;
        }
        many[line].parsed = evaluate();
        keepLabels(line);
        unconfirmed = line;
        ++line;
        blanksUpTo(next);
    }
    // Only a line read last and followed by a clean end of the stream is confirmed here.
    if (unconfirmed != kNoLine && (line != last || it != stream.end() || stream.truncated_bytes() != 0)) {
        return unconfirmed - first;
    }
    return line - first;
}

std::span<const ParsedLineOf> LineParser::Impl::parseMany(std::string_view lines) {
    many.clear();
    const char* const input_end = lines.data() + lines.size();
    bool last_has_newline = true;
    while (!lines.empty()) {
        const std::size_t nl = lines.find('\n');
        if (nl == std::string_view::npos) {
            many.push_back(ParsedLineOf{lines, ParsedLine{}});
            last_has_newline = false;
            break;
        }
        many.push_back(ParsedLineOf{lines.substr(0, nl), ParsedLine{}});
        lines.remove_prefix(nl + 1);
    }
    if (!labels.empty()) {
        label_arena.clear();
        label_spans.clear();
        label_first.assign(many.size(), std::string_view::npos);
    }
    // A last line without '\n' goes alone through parse(): every window ends with a
    // newline, so an unclosed string in its last line holds a raw '\n' and fails stage 1
    // instead of being tolerated as the truncated tail of a stream.
    const std::size_t windowed = last_has_newline ? many.size() : many.size() - 1;
    std::size_t i = 0;
    while (i < windowed) {
        // Consecutive lines with their newlines, up to kWindowBytes (a longer line alone).
        const char* text = many[i].line.data();
        std::size_t j = i;
        std::size_t size = 0;
        while (j < windowed) {
            const std::string_view l = many[j].line;
            const std::size_t with_nl = static_cast<std::size_t>(l.data() + l.size() - text) + 1;
            if (j > i && with_nl > kWindowBytes) {
                break;
            }
            size = with_nl;
            ++j;
        }
        // A line the stream could not vouch for goes through parse(), and the stream starts
        // again after it, as long as the stage 1 work stays within twice the window's
        // size: a flood of bad lines then costs at most two extra passes of stage 1.
        const char* window_end = text + size;
        const auto after = static_cast<std::size_t>(input_end - window_end);
        std::size_t budget = 2 * size;
        std::size_t k = i;
        while (k < j) {
            const char* from = many[k].line.data();
            const auto bytes = static_cast<std::size_t>(window_end - from);
            if (bytes > budget) {
                for (; k < j; ++k) {
                    many[k].parsed = parse(many[k].line);
                    keepLabels(k);
                }
                break;
            }
            budget -= bytes;
            k += parseWindow(from, bytes, after, k, j - k);
            if (k < j) {
                many[k].parsed = parse(many[k].line);
                keepLabels(k);
                ++k;
            }
        }
        i = j;
    }
    if (windowed < many.size()) {
        many.back().parsed = parse(many.back().line);
        keepLabels(many.size() - 1);
    }
    if (!labels.empty()) {
        label_views.clear();
        for (const auto& [offset, size] : label_spans) {
            label_views.emplace_back(label_arena.data() + offset, size);
        }
        for (std::size_t n = 0; n < many.size(); ++n) {
            if (label_first[n] != std::string_view::npos) {
                many[n].parsed.labels = std::span<const std::string_view>(label_views.data() + label_first[n],
                                                                          labels.size());
            }
        }
    }
    return many;
}

LineParser::LineParser(const LogSourceConfig& config) : impl_(std::make_unique<Impl>(config)) {}
LineParser::~LineParser() = default;

ParsedLine LineParser::parse(std::string_view line) { return impl_->parse(line); }

std::optional<std::int64_t> parseRfc3339Nanos(std::string_view text) {
    // Bounded like event times: "4052-11-23T10:04:12+02:00" overflowed int64 nanoseconds
    // (found by fuzz_values).
    const auto t = parseRfc3339(text);
    return t ? epochNanos(*t) : std::nullopt;
}

std::span<const ParsedLineOf> LineParser::parseMany(std::string_view lines) { return impl_->parseMany(lines); }

}  // namespace rollguard::agent
