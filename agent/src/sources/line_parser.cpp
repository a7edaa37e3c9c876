#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <optional>
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
//  - the values of the latency and error fields are fully parsed.
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

std::vector<std::string> splitPath(const std::string& path) {
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

std::string_view trim(std::string_view s) {
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
    s = trim(s);
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
    s = trim(s);
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
    Scalar value;
};

Scalar readScalar(od::value& v, od::json_type type) {
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

/// Resolves `wants` (n <= 2) against `v`, the value at path[0..depth) of each of them.
/// Nested objects are searched with find_field_unordered, which is order-independent and
/// may be asked twice on the same object.
void resolve(od::value v, Want** wants, int n, std::size_t depth) {
    od::json_type type{};
    if (v.type().get(type)) {
        for (int i = 0; i < n; ++i) {
            wants[i]->value.kind = Scalar::Kind::Unreadable;
        }
        return;
    }
    bool any_inner = false;
    for (int i = 0; i < n; ++i) {
        any_inner = any_inner || wants[i]->path.size() > depth;
    }
    if (type == od::json_type::object && any_inner) {
        od::object obj;
        if (v.get_object().get(obj)) {
            for (int i = 0; i < n; ++i) {
                wants[i]->value.kind = Scalar::Kind::Unreadable;
            }
            return;
        }
        for (int i = 0; i < n; ++i) {
            Want* w = wants[i];
            if (w->path.size() == depth) {
                w->value.kind = Scalar::Kind::Container;
                continue;
            }
            // Two wants under the same key must be resolved from one lookup: a value can
            // be consumed only once.
            Want* group[2] = {w, nullptr};
            int group_n = 1;
            if (i + 1 < n && wants[i + 1]->path.size() > depth &&
                wants[i + 1]->path[depth] == w->path[depth]) {
                group[group_n++] = wants[i + 1];
                ++i;
            }
            od::value child;
            const auto err = obj.find_field_unordered(w->path[depth]).get(child);
            if (err == sj::NO_SUCH_FIELD) {
                continue;  // stays Missing
            }
            if (err) {
                for (int g = 0; g < group_n; ++g) {
                    group[g]->value.kind = Scalar::Kind::Unreadable;
                }
                continue;
            }
            resolve(child, group, group_n, depth + 1);
        }
        return;
    }
    Scalar s;
    bool have_scalar = false;
    for (int i = 0; i < n; ++i) {
        if (wants[i]->path.size() > depth) {
            continue;  // wanted a key inside, but this is not an object: missing
        }
        if (!have_scalar) {
            s = readScalar(v, type);
            have_scalar = true;
        }
        wants[i]->value = s;
    }
}

}  // namespace

struct LineParser::Impl {
    explicit Impl(const LogSourceConfig& config) : error_pred(config.error) {
        if (config.latency && !config.latency->field.empty()) {
            latency.path = splitPath(config.latency->field);
            has_latency = true;
            default_scale = secondsPerUnit(config.latency->unit);
        }
        if (error_pred.kind != ErrorPredicate::Kind::None && !error_pred.field.empty()) {
            error.path = splitPath(error_pred.field);
            has_error = true;
        }
    }

    od::parser parser;
    std::vector<char> buffer;  // the line plus SIMDJSON_PADDING, reused
    ErrorPredicate error_pred;
    Want latency;
    Want error;
    bool has_latency = false;
    bool has_error = false;
    double default_scale = 1e-3;

    ParsedLine parse(std::string_view line);
    ParsedLine checkScalarRoot(od::document& doc, od::json_type type);
    bool isError(const Scalar& s) const;
};

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

bool LineParser::Impl::isError(const Scalar& s) const {
    switch (error_pred.kind) {
        case ErrorPredicate::Kind::None:
            return false;
        case ErrorPredicate::Kind::NumberAtLeast:
            if (s.kind == Scalar::Kind::Number) {
                return s.number >= error_pred.gte;
            }
            if (s.kind == Scalar::Kind::String) {
                const auto v = parseNumber(s.string);
                return v && *v >= error_pred.gte;
            }
            return false;
        case ErrorPredicate::Kind::StringIn:
            // Exact, case-sensitive match: "ERROR" is not "error" (say both in the config).
            if (s.kind != Scalar::Kind::String) {
                return false;
            }
            return std::find(error_pred.in.begin(), error_pred.in.end(), s.string) != error_pred.in.end();
        case ErrorPredicate::Kind::IsTrue:
            return s.kind == Scalar::Kind::Bool && s.boolean;
        case ErrorPredicate::Kind::NumberInRanges:
        case ErrorPredicate::Kind::Present:
        case ErrorPredicate::Kind::All:
        case ErrorPredicate::Kind::Any:
            return false;  // not produced by the config loader yet
    }
    return false;
}

ParsedLine LineParser::Impl::parse(std::string_view line) {
    ParsedLine out;
    if (!line.empty() && line.back() == '\r') {
        line.remove_suffix(1);
    }
    const std::size_t needed = line.size() + sj::SIMDJSON_PADDING;
    if (buffer.size() < needed) {
        buffer.resize(std::max(needed, buffer.size() * 2));
    }
    std::memcpy(buffer.data(), line.data(), line.size());
    // The padding must not look like JSON continuing past the line.
    std::memset(buffer.data() + line.size(), ' ', sj::SIMDJSON_PADDING);

    od::document doc;
    if (parser.iterate(buffer.data(), line.size(), buffer.size()).get(doc)) {
        return out;  // InvalidJson (empty, bad UTF-8, unterminated string, ...)
    }
    od::json_type type{};
    if (doc.type().get(type)) {
        return out;
    }
    if (type != od::json_type::object) {
        return checkScalarRoot(doc, type);
    }
    od::object obj;
    if (doc.get_object().get(obj)) {
        return out;
    }

    latency.value = Scalar{};
    error.value = Scalar{};
    Want* wanted[2];
    int n_wanted = 0;
    if (has_latency) {
        wanted[n_wanted++] = &latency;
    }
    if (has_error) {
        wanted[n_wanted++] = &error;
    }

    // Walk every top-level field (not find_field_unordered at the root): this validates
    // the object's structure to its closing brace in the same pass.
    for (auto field : obj) {
        std::string_view key;
        if (field.unescaped_key().get(key)) {
            return out;
        }
        Want* matched[2];
        int n_matched = 0;
        for (int i = 0; i < n_wanted; ++i) {
            if (wanted[i]->path.front() == key) {
                matched[n_matched++] = wanted[i];
            }
        }
        if (n_matched > 0) {
            od::value v;
            if (field.value().get(v)) {
                return out;
            }
            resolve(v, matched, n_matched, 1);
        }
    }
    // In a walk that fails (missing comma, truncated line) the loop above just ends;
    // only a document consumed to its end is whole. current_location() reports
    // OUT_OF_BOUNDS exactly when nothing follows the root object.
    if (doc.current_depth() != 0 || doc.current_location().error() != sj::OUT_OF_BOUNDS) {
        return out;
    }

    if (latency.value.kind == Scalar::Kind::Unreadable || error.value.kind == Scalar::Kind::Unreadable) {
        return out;  // the token we needed is malformed JSON
    }
    switch (latency.value.kind) {
        case Scalar::Kind::Missing:
        case Scalar::Kind::Null:  // "duration": null means "no latency", like a missing field
            break;
        case Scalar::Kind::Number:
            if (!(latency.value.number >= 0) || !std::isfinite(latency.value.number)) {
                out.reason = BadLineReason::BadLatency;
                return out;
            }
            out.latency_seconds = latency.value.number * default_scale;
            break;
        case Scalar::Kind::String: {
            const auto secs = parseLatencyString(latency.value.string, default_scale);
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
    out.error = has_error && isError(error.value);
    out.ok = true;
    return out;
}

LineParser::LineParser(const LogSourceConfig& config) : impl_(std::make_unique<Impl>(config)) {}
LineParser::~LineParser() = default;

ParsedLine LineParser::parse(std::string_view line) { return impl_->parse(line); }

}  // namespace rollguard::agent
