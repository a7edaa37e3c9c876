#include "rollguard/agent/exposition.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <system_error>

namespace rollguard::agent {
namespace {

constexpr std::uint32_t kNoFamily = std::numeric_limits<std::uint32_t>::max();

enum CharClass : std::uint8_t { kNameStart = 1, kNameChar = 2, kLabelStart = 4, kLabelChar = 8 };

constexpr std::array<std::uint8_t, 256> makeCharTable() {
    std::array<std::uint8_t, 256> t{};
    for (int c = 0; c < 256; ++c) {
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        const bool digit = c >= '0' && c <= '9';
        std::uint8_t v = 0;
        if (alpha || c == '_') {
            v |= kNameStart | kNameChar | kLabelStart | kLabelChar;
        }
        if (c == ':') {
            v |= kNameStart | kNameChar;
        }
        if (digit) {
            v |= kNameChar | kLabelChar;
        }
        t[static_cast<std::size_t>(c)] = v;
    }
    return t;
}
constexpr auto kCharTable = makeCharTable();

inline bool hasClass(char c, CharClass cls) {
    return (kCharTable[static_cast<unsigned char>(c)] & cls) != 0;
}

inline bool isBlank(char c) { return c == ' ' || c == '\t'; }

/// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool validUtf8(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
        while (i + 8 <= n) {
            std::uint64_t w = 0;
            std::memcpy(&w, p + i, 8);
            if ((w & 0x8080808080808080ULL) != 0) {
                break;
            }
            i += 8;
        }
        if (i >= n) {
            break;
        }
        const unsigned char c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len = 0;
        std::uint32_t cp = 0;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1Fu;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0Fu;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07u;
        } else {
            return false;
        }
        if (n - i < len) {
            return false;
        }
        for (std::size_t k = 1; k < len; ++k) {
            const unsigned char cc = p[i + k];
            if ((cc & 0xC0u) != 0x80u) {
                return false;
            }
            cp = (cp << 6) | (cc & 0x3Fu);
        }
        if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) {
            return false;
        }
        if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) {
            return false;
        }
        i += len;
    }
    return true;
}

/// Code points in valid UTF-8.
std::size_t utf8Length(std::string_view s) {
    std::size_t n = 0;
    for (const char c : s) {
        n += (static_cast<unsigned char>(c) & 0xC0u) != 0x80u ? 1 : 0;
    }
    return n;
}

bool equalsIgnoreCase(std::string_view a, std::string_view lower) {
    if (a.size() != lower.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c - 'A' + 'a');
        }
        if (c != lower[i]) {
            return false;
        }
    }
    return true;
}

/// Like Go's strconv.ParseFloat for what exporters write: optional sign, decimal or
/// exponent form, Inf/Infinity/NaN in any case. Out-of-range values are rejected.
bool parseFloat(std::string_view s, double& out) {
    if (s.empty()) {
        return false;
    }
    bool negative = false;
    std::size_t i = 0;
    if (s[0] == '+' || s[0] == '-') {
        negative = s[0] == '-';
        i = 1;
    }
    const std::string_view rest = s.substr(i);
    if (rest.empty() || rest[0] == '+' || rest[0] == '-') {
        return false;
    }
    if (equalsIgnoreCase(rest, "inf") || equalsIgnoreCase(rest, "infinity")) {
        out = negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
        return true;
    }
    if (equalsIgnoreCase(rest, "nan")) {
        out = std::numeric_limits<double>::quiet_NaN();
        return true;
    }
    const char c0 = rest[0];
    if (!((c0 >= '0' && c0 <= '9') || c0 == '.')) {
        return false;  // from_chars would take "nan(...)" and friends
    }
    double v = 0.0;
    const char* end = rest.data() + rest.size();
    const auto [ptr, ec] = std::from_chars(rest.data(), end, v, std::chars_format::general);
    if (ec != std::errc() || ptr != end) {
        return false;
    }
    out = negative ? -v : v;
    return true;
}

bool parseInt64(std::string_view s, std::int64_t& out) {
    if (!s.empty() && s[0] == '+') {
        s.remove_prefix(1);
        if (!s.empty() && s[0] == '-') {
            return false;
        }
    }
    if (s.empty()) {
        return false;
    }
    const char* end = s.data() + s.size();
    const auto [ptr, ec] = std::from_chars(s.data(), end, out);
    return ec == std::errc() && ptr == end;
}

/// OpenMetrics float seconds to integer milliseconds (nearest).
bool secondsToMillis(std::string_view s, std::int64_t& out) {
    double seconds = 0.0;
    if (!parseFloat(s, seconds) || !std::isfinite(seconds)) {
        return false;
    }
    const double ms = seconds * 1000.0;
    if (!(std::fabs(ms) < 9.0e18)) {
        return false;
    }
    out = std::llround(ms);
    return true;
}

/// Label values: \\ \" \n decoded, any other escape kept verbatim (as Prometheus does).
std::string unescapeLabelValue(std::string_view raw) {
    std::string out;
    out.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
        const char c = raw[i];
        if (c == '\\' && i + 1 < raw.size()) {
            const char next = raw[i + 1];
            ++i;
            if (next == '\\' || next == '"') {
                out.push_back(next);
            } else if (next == 'n') {
                out.push_back('\n');
            } else {
                out.push_back('\\');
                out.push_back(next);
            }
        } else {
            out.push_back(c);
        }
    }
    return out;
}

/// HELP text: \\ and \n decoded (OpenMetrics also \"), other escapes kept verbatim.
std::string unescapeHelp(std::string_view raw, bool openmetrics) {
    std::string out;
    out.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
        const char c = raw[i];
        if (c == '\\' && i + 1 < raw.size()) {
            const char next = raw[i + 1];
            if (next == '\\') {
                out.push_back('\\');
                ++i;
                continue;
            }
            if (next == 'n') {
                out.push_back('\n');
                ++i;
                continue;
            }
            if (openmetrics && next == '"') {
                out.push_back('"');
                ++i;
                continue;
            }
        }
        out.push_back(c);
    }
    return out;
}

inline std::uint64_t mixHash(std::uint64_t h, std::uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
    return h;
}

std::uint64_t seriesHash(std::string_view name, const std::vector<ExpositionLabel>& labels) {
    const std::hash<std::string_view> hasher;
    std::uint64_t h = hasher(name);
    for (const auto& l : labels) {
        h = mixHash(h, hasher(l.name));
        h = mixHash(h, hasher(l.value));
    }
    return h;
}

/// Every suffix a sample name may carry past its family name, in either format.
constexpr std::array<std::string_view, 8> kSuffixes = {"_total", "_created", "_bucket", "_sum",
                                                        "_count", "_gcount", "_gsum",    "_info"};

/// The part of `name` after `family`, if name starts with family; else nullopt.
std::optional<std::string_view> suffixAfter(std::string_view name, std::string_view family) {
    if (name.size() < family.size() || name.substr(0, family.size()) != family) {
        return std::nullopt;
    }
    return name.substr(family.size());
}

/// Whether a sample named `name` belongs to `family` under the format's naming rules.
bool fitsFamily(const MetricFamily& family, std::string_view name, ExpositionFormat format) {
    const auto suffix = suffixAfter(name, family.name);
    if (!suffix) {
        return false;
    }
    const std::string_view s = *suffix;
    if (format == ExpositionFormat::PrometheusText) {
        switch (family.type) {
            case MetricType::Histogram:
                return s == "_bucket" || s == "_sum" || s == "_count";
            case MetricType::Summary:
                return s.empty() || s == "_sum" || s == "_count";
            default:
                return s.empty();
        }
    }
    switch (family.type) {
        case MetricType::Counter:
            return s == "_total" || s == "_created";
        case MetricType::Histogram:
            return s == "_bucket" || s == "_count" || s == "_sum" || s == "_created";
        case MetricType::GaugeHistogram:
            return s == "_bucket" || s == "_gcount" || s == "_gsum";
        case MetricType::Summary:
            return s.empty() || s == "_count" || s == "_sum" || s == "_created";
        case MetricType::Info:
            return s == "_info";
        case MetricType::Gauge:
        case MetricType::StateSet:
        case MetricType::Unknown:
            return s.empty();
    }
    return false;
}

std::optional<MetricType> openMetricsType(std::string_view t) {
    if (t == "counter") {
        return MetricType::Counter;
    }
    if (t == "gauge") {
        return MetricType::Gauge;
    }
    if (t == "histogram") {
        return MetricType::Histogram;
    }
    if (t == "gaugehistogram") {
        return MetricType::GaugeHistogram;
    }
    if (t == "summary") {
        return MetricType::Summary;
    }
    if (t == "info") {
        return MetricType::Info;
    }
    if (t == "stateset") {
        return MetricType::StateSet;
    }
    if (t == "unknown") {
        return MetricType::Unknown;
    }
    return std::nullopt;
}

/// The text format 0.0.4 knows four of OpenMetrics' types, and spells unknown "untyped".
std::optional<MetricType> textType(std::string_view t) {
    if (t == "untyped") {
        return MetricType::Unknown;
    }
    const auto type = openMetricsType(t);
    if (type == MetricType::Counter || type == MetricType::Gauge || type == MetricType::Histogram ||
        type == MetricType::Summary) {
        return type;
    }
    return std::nullopt;
}

enum class MetaKind { Type, Help, Unit };

/// One parse. Every read of the current line goes through pos_ < line_.size() checks.
class Parser {
public:
    Parser(std::string_view text, ExpositionFormat format, const ExpositionLimits& limits, ParseResult& out)
        : text_(text), om_(format == ExpositionFormat::OpenMetrics), format_(format), limits_(limits), out_(out) {}

    /// Parses the whole body. A duplicate series is found after the lines are read; it
    /// still wins over any later error, so the error reported is always the first.
    bool run() {
        const bool parsed = parseLines();
        const std::uint32_t dup = firstDuplicate();
        if (dup != kNoFamily) {
            const Sample& later = out_.samples[dup];
            const std::uint32_t earlier = duplicate_of_;
            out_.errors.clear();
            line_no_ = later.line;
            line_ = {};
            return fail(0, "duplicate series (first on line " + std::to_string(out_.samples[earlier].line) + ")");
        }
        return parsed;
    }

private:
    /// The index of the first sample (in body order) that repeats an earlier series, or
    /// kNoFamily; duplicate_of_ is then the earlier one.
    std::uint32_t firstDuplicate() {
        std::sort(series_.begin(), series_.end());
        std::uint32_t best = kNoFamily;
        for (std::size_t i = 0; i < series_.size();) {
            std::size_t j = i + 1;
            while (j < series_.size() && series_[j].first == series_[i].first) {
                ++j;
            }
            // Equal hashes, ordered by index: compare each with the earlier ones.
            for (std::size_t b = i + 1; b < j; ++b) {
                for (std::size_t a = i; a < b; ++a) {
                    const Sample& x = out_.samples[series_[a].second];
                    const Sample& y = out_.samples[series_[b].second];
                    if (series_[b].second < best && x.name == y.name && x.labels == y.labels) {
                        best = series_[b].second;
                        duplicate_of_ = series_[a].second;
                        break;
                    }
                }
            }
            i = j;
        }
        return best;
    }

    bool parseLines() {
        // Reserve for one sample per line (bounded by a 16-byte line, a heuristic: more
        // samples just regrow; and by max_samples) so a big scrape does not move them.
        std::size_t lines = 1;
        if (!text_.empty()) {
            const char* p = text_.data();
            const char* const end = p + text_.size();
            while (const void* nl = std::memchr(p, '\n', static_cast<std::size_t>(end - p))) {
                ++lines;
                p = static_cast<const char*>(nl) + 1;
            }
        }
        lines = std::min(lines, text_.size() / 16 + 1);
        if (limits_.max_samples != 0) {
            lines = std::min(lines, limits_.max_samples);
        }
        out_.samples.reserve(lines);
        std::size_t offset = 0;
        while (offset < text_.size()) {
            ++line_no_;
            const char* base = text_.data() + offset;
            const auto* nl = static_cast<const char*>(std::memchr(base, '\n', text_.size() - offset));
            const std::size_t len = nl != nullptr ? static_cast<std::size_t>(nl - base) : text_.size() - offset;
            line_ = text_.substr(offset, len);
            pos_ = 0;
            offset += len + (nl != nullptr ? 1 : 0);
            if (saw_eof_) {
                return fail(0, "content after # EOF");
            }
            if (limits_.max_line_length != 0 && line_.size() > limits_.max_line_length) {
                return fail(limits_.max_line_length, "line longer than " + std::to_string(limits_.max_line_length) +
                                                         " bytes");
            }
            if (!parseLine()) {
                return false;
            }
        }
        if (om_ && !saw_eof_) {
            ++line_no_;
            line_ = {};
            return fail(0, "truncated: no # EOF");
        }
        return true;
    }

    bool fail(std::size_t column0, std::string reason) {
        ExpositionError e;
        e.line = line_no_;
        e.column = static_cast<std::uint32_t>(std::min<std::size_t>(column0, line_.size()) + 1);
        e.reason = std::move(reason);
        out_.errors.push_back(std::move(e));
        return false;
    }

    bool atEnd() const { return pos_ >= line_.size(); }
    bool at(char c) const { return pos_ < line_.size() && line_[pos_] == c; }
    void skipBlanks() {
        while (pos_ < line_.size() && isBlank(line_[pos_])) {
            ++pos_;
        }
    }
    /// Advances over a run of characters of class `rest` after one of class `first`.
    std::string_view readName(CharClass first, CharClass rest) {
        const std::size_t start = pos_;
        if (pos_ >= line_.size() || !hasClass(line_[pos_], first)) {
            return {};
        }
        ++pos_;
        while (pos_ < line_.size() && hasClass(line_[pos_], rest)) {
            ++pos_;
        }
        return line_.substr(start, pos_ - start);
    }
    std::string_view readToken() {
        const std::size_t start = pos_;
        while (pos_ < line_.size() && line_[pos_] != ' ' && (om_ || line_[pos_] != '\t')) {
            ++pos_;
        }
        return line_.substr(start, pos_ - start);
    }

    bool parseLine() {
        if (om_) {
            if (line_.empty()) {
                return fail(0, "empty line");
            }
            if (line_[0] == '#') {
                return parseOpenMetricsComment();
            }
            return parseSample();
        }
        skipBlanks();
        if (atEnd()) {
            return true;
        }
        if (line_[pos_] == '#') {
            return parseTextComment();
        }
        return parseSample();
    }

    bool parseTextComment() {
        ++pos_;  // '#'
        skipBlanks();
        const std::string_view keyword = readToken();
        const bool help = keyword == "HELP";
        if (!help && keyword != "TYPE") {
            return true;  // a plain comment
        }
        skipBlanks();
        const std::size_t name_col = pos_;
        const std::string_view name = readName(kNameStart, kNameChar);
        if (name.empty() || (!atEnd() && !isBlank(line_[pos_]))) {
            return fail(name_col, "invalid metric name in " + std::string(keyword));
        }
        skipBlanks();
        if (help) {
            const std::string_view raw = line_.substr(pos_);
            if (!validUtf8(raw)) {
                return fail(pos_, "HELP is not valid UTF-8");
            }
            return applyMetadata(name, name_col, MetaKind::Help, {}, unescapeHelp(raw, false));
        }
        const std::size_t type_col = pos_;
        const std::string_view type_name = readToken();
        skipBlanks();
        if (!atEnd()) {
            return fail(pos_, "unexpected text after the type");
        }
        const auto type = textType(type_name);
        if (!type) {
            return fail(type_col, "unknown metric type '" + std::string(type_name) + "'");
        }
        return applyMetadata(name, name_col, MetaKind::Type, *type, {});
    }

    bool parseOpenMetricsComment() {
        if (line_ == "# EOF") {
            saw_eof_ = true;
            return true;
        }
        const std::string_view head = line_.substr(0, std::min<std::size_t>(7, line_.size()));
        MetaKind kind = MetaKind::Type;
        if (head == "# TYPE ") {
            kind = MetaKind::Type;
        } else if (head == "# HELP ") {
            kind = MetaKind::Help;
        } else if (head == "# UNIT ") {
            kind = MetaKind::Unit;
        } else {
            return fail(0, "invalid comment: OpenMetrics allows only # TYPE, # HELP, # UNIT and # EOF");
        }
        pos_ = 7;
        const std::size_t name_col = pos_;
        const std::string_view name = readName(kNameStart, kNameChar);
        if (name.empty() || (!atEnd() && line_[pos_] != ' ')) {
            return fail(name_col, "invalid metric name");
        }
        std::string_view rest;
        std::size_t rest_col = pos_;
        if (!atEnd()) {
            ++pos_;  // ' '
            rest_col = pos_;
            rest = line_.substr(pos_);
        }
        switch (kind) {
            case MetaKind::Type: {
                const auto type = openMetricsType(rest);
                if (!type) {
                    return fail(rest_col, "unknown metric type '" + std::string(rest) + "'");
                }
                return applyMetadata(name, name_col, kind, *type, {});
            }
            case MetaKind::Help:
                if (!validUtf8(rest)) {
                    return fail(rest_col, "HELP is not valid UTF-8");
                }
                return applyMetadata(name, name_col, kind, {}, unescapeHelp(rest, true));
            case MetaKind::Unit:
                for (std::size_t i = 0; i < rest.size(); ++i) {
                    if (!hasClass(rest[i], kNameChar)) {
                        return fail(rest_col + i, "invalid unit");
                    }
                }
                if (!rest.empty()) {
                    const bool suffix = name.size() > rest.size() + 1 &&
                                        name.substr(name.size() - rest.size()) == rest &&
                                        name[name.size() - rest.size() - 1] == '_';
                    if (!suffix) {
                        return fail(rest_col, "unit '" + std::string(rest) + "' is not a suffix of the metric name");
                    }
                }
                return applyMetadata(name, name_col, kind, {}, std::string(rest));
        }
        return true;
    }

    bool applyMetadata(std::string_view name, std::size_t col, MetaKind kind, MetricType type, std::string text) {
        const char* what = kind == MetaKind::Type ? "TYPE" : (kind == MetaKind::Help ? "HELP" : "UNIT");
        std::uint32_t idx = kNoFamily;
        if (const auto it = out_.family_index.find(name); it != out_.family_index.end()) {
            idx = it->second;
            MetricFamily& fam = out_.families[idx];
            if (!fam.samples.empty()) {
                return fail(col, std::string(what) + " for '" + std::string(name) + "' after its samples");
            }
            const bool duplicate = (kind == MetaKind::Type && fam.has_type) ||
                                   (kind == MetaKind::Help && fam.help.has_value()) ||
                                   (kind == MetaKind::Unit && fam.unit.has_value());
            if (duplicate) {
                return fail(col, std::string("duplicate ") + what + " for '" + std::string(name) + "'");
            }
            if (om_ && idx != current_) {
                return fail(col, "metadata of family '" + std::string(name) + "' is not grouped");
            }
        } else {
            idx = newFamily(name);
        }
        MetricFamily& fam = out_.families[idx];
        switch (kind) {
            case MetaKind::Type:
                fam.type = type;
                fam.has_type = true;
                break;
            case MetaKind::Help:
                fam.help = std::move(text);
                break;
            case MetaKind::Unit:
                fam.unit = std::move(text);
                break;
        }
        current_ = idx;
        return true;
    }

    std::uint32_t newFamily(std::string_view name) {
        const auto idx = static_cast<std::uint32_t>(out_.families.size());
        MetricFamily fam;
        fam.name = std::string(name);
        out_.families.push_back(std::move(fam));
        out_.family_index.emplace(std::string(name), idx);
        return idx;
    }

    /// Parses `{name="value",...}` at pos_ (on the '{') into labels.
    bool parseLabels(std::vector<ExpositionLabel>& labels, bool exemplar) {
        ++pos_;  // '{'
        if (!om_) {
            skipBlanks();
        }
        if (at('}')) {
            ++pos_;
            return true;
        }
        for (;;) {
            const std::size_t name_col = pos_;
            const std::string_view name = readName(kLabelStart, kLabelChar);
            if (name.empty()) {
                return fail(name_col, "invalid label name");
            }
            if (limits_.max_label_name_length != 0 && name.size() > limits_.max_label_name_length) {
                return fail(name_col,
                            "label name longer than " + std::to_string(limits_.max_label_name_length) + " bytes");
            }
            if (!om_) {
                skipBlanks();
            }
            if (!at('=')) {
                return fail(pos_, "expected '=' after the label name");
            }
            ++pos_;
            if (!om_) {
                skipBlanks();
            }
            if (!at('"')) {
                return fail(pos_, "expected '\"' to open the label value");
            }
            ++pos_;
            const std::size_t value_col = pos_;
            bool escaped = false;
            std::size_t i = pos_;
            while (i < line_.size() && line_[i] != '"') {
                if (line_[i] == '\\') {
                    escaped = true;
                    ++i;  // the escaped character, if any, is skipped below
                }
                ++i;
            }
            if (i >= line_.size()) {
                return fail(value_col - 1, "unterminated label value");
            }
            const std::string_view raw = line_.substr(pos_, i - pos_);
            pos_ = i + 1;
            if (!validUtf8(raw)) {
                return fail(value_col, "label value is not valid UTF-8");
            }
            ExpositionLabel label;
            label.name = std::string(name);
            label.value = escaped ? unescapeLabelValue(raw) : std::string(raw);
            if (limits_.max_label_value_length != 0 && label.value.size() > limits_.max_label_value_length) {
                return fail(value_col,
                            "label value longer than " + std::to_string(limits_.max_label_value_length) + " bytes");
            }
            labels.push_back(std::move(label));
            if (!exemplar && limits_.max_labels_per_sample != 0 && labels.size() > limits_.max_labels_per_sample) {
                return fail(name_col, "more than " + std::to_string(limits_.max_labels_per_sample) + " labels");
            }
            if (!om_) {
                skipBlanks();
            }
            if (atEnd()) {
                return fail(pos_, "unterminated label set");
            }
            if (line_[pos_] == ',') {
                ++pos_;
                if (!om_) {
                    skipBlanks();
                    if (at('}')) {
                        ++pos_;
                        return true;
                    }
                }
                continue;
            }
            if (line_[pos_] == '}') {
                ++pos_;
                return true;
            }
            return fail(pos_, "expected ',' or '}' after a label");
        }
    }

    /// Sorts labels by name; false (and an error) on a repeated name.
    bool sortLabels(std::vector<ExpositionLabel>& labels, std::size_t col) {
        const auto by_name = [](const ExpositionLabel& a, const ExpositionLabel& b) { return a.name < b.name; };
        if (!std::is_sorted(labels.begin(), labels.end(), by_name)) {
            std::sort(labels.begin(), labels.end(), by_name);
        }
        for (std::size_t i = 1; i < labels.size(); ++i) {
            if (labels[i].name == labels[i - 1].name) {
                return fail(col, "duplicate label name '" + labels[i].name + "'");
            }
        }
        return true;
    }

    bool parseExemplar(Exemplar& exemplar) {
        // At '#': "# {labels} value [timestamp]".
        ++pos_;
        if (!at(' ')) {
            return fail(pos_, "expected a space after '#' of the exemplar");
        }
        ++pos_;
        if (!at('{')) {
            return fail(pos_, "expected '{' to open the exemplar labels");
        }
        const std::size_t labels_col = pos_;
        if (!parseLabels(exemplar.labels, true) || !sortLabels(exemplar.labels, labels_col)) {
            return false;
        }
        std::size_t chars = 0;
        for (const auto& l : exemplar.labels) {
            chars += utf8Length(l.name) + utf8Length(l.value);
        }
        if (chars > 128) {
            return fail(labels_col, "exemplar labels longer than 128 characters");
        }
        if (!at(' ')) {
            return fail(pos_, "expected a space before the exemplar value");
        }
        ++pos_;
        const std::size_t value_col = pos_;
        if (!parseFloat(readToken(), exemplar.value)) {
            return fail(value_col, "invalid exemplar value");
        }
        if (atEnd()) {
            return true;
        }
        ++pos_;  // ' '
        const std::size_t ts_col = pos_;
        std::int64_t ts = 0;
        if (!secondsToMillis(readToken(), ts)) {
            return fail(ts_col, "invalid exemplar timestamp");
        }
        exemplar.timestamp_ms = ts;
        if (!atEnd()) {
            return fail(pos_, "unexpected text after the exemplar");
        }
        return true;
    }

    /// The family a sample named `name` belongs to (created if needed), or kNoFamily
    /// after an error.
    std::uint32_t assignFamily(std::string_view name, std::size_t col) {
        if (current_ != kNoFamily && fitsFamily(out_.families[current_], name, format_)) {
            return current_;
        }
        std::uint32_t idx = kNoFamily;
        if (const auto it = out_.family_index.find(name); it != out_.family_index.end()) {
            const MetricFamily& fam = out_.families[it->second];
            if (!fitsFamily(fam, name, format_)) {
                fail(col, "sample '" + std::string(name) + "' does not fit the " +
                              std::string(metricTypeName(fam.type)) + " family '" + fam.name + "'");
                return kNoFamily;
            }
            idx = it->second;
        } else {
            for (const std::string_view suffix : kSuffixes) {
                if (name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix) {
                    const auto base = out_.family_index.find(name.substr(0, name.size() - suffix.size()));
                    if (base != out_.family_index.end() && fitsFamily(out_.families[base->second], name, format_)) {
                        idx = base->second;
                        break;
                    }
                }
            }
        }
        if (idx == kNoFamily) {
            idx = newFamily(name);
        } else if (om_ && idx != current_) {
            fail(col, "family '" + out_.families[idx].name + "' is interleaved with another family");
            return kNoFamily;
        }
        current_ = idx;
        return idx;
    }

    bool checkNumericLabel(const Sample& s, std::string_view label, std::size_t col) {
        const std::string* v = s.label(label);
        double d = 0.0;
        if (v == nullptr) {
            return fail(col, "sample '" + s.name + "' has no '" + std::string(label) + "' label");
        }
        if (!parseFloat(*v, d)) {
            return fail(col, "sample '" + s.name + "' has a non-numeric '" + std::string(label) + "' label");
        }
        return true;
    }

    bool parseSample() {
        const std::size_t name_col = pos_;
        const std::string_view name = readName(kNameStart, kNameChar);
        if (name.empty()) {
            return fail(name_col, "invalid metric name");
        }
        Sample s;
        s.line = line_no_;
        const std::size_t after_name = pos_;
        if (!om_) {
            skipBlanks();
        }
        const std::size_t labels_col = pos_;
        if (at('{')) {
            if (!parseLabels(s.labels, false)) {
                return false;
            }
            if (om_) {
                if (!at(' ')) {
                    return fail(pos_, "expected a space before the value");
                }
                ++pos_;
            } else {
                const std::size_t before = pos_;
                skipBlanks();
                if (pos_ == before) {
                    return fail(pos_, atEnd() ? "missing value" : "expected a blank before the value");
                }
            }
        } else if (pos_ == after_name) {
            if (atEnd()) {
                return fail(pos_, "missing value");
            }
            if (!om_ || line_[pos_] != ' ') {
                return fail(pos_, "invalid character in metric name");
            }
            ++pos_;  // OpenMetrics: the one space
        }
        const std::size_t value_col = pos_;
        const std::string_view value = readToken();
        if (value.empty()) {
            return fail(value_col, "missing value");
        }
        if (!parseFloat(value, s.value)) {
            return fail(value_col, "invalid value '" + std::string(value.substr(0, 32)) + "'");
        }
        if (om_) {
            if (!atEnd()) {
                ++pos_;  // ' '
                if (!at('#')) {
                    const std::size_t ts_col = pos_;
                    std::int64_t ts = 0;
                    if (!secondsToMillis(readToken(), ts)) {
                        return fail(ts_col, "invalid timestamp");
                    }
                    s.timestamp_ms = ts;
                    if (!atEnd()) {
                        ++pos_;  // ' '
                        if (!at('#')) {
                            return fail(pos_, "unexpected text after the timestamp");
                        }
                    }
                }
                if (at('#')) {
                    Exemplar ex;
                    if (!parseExemplar(ex)) {
                        return false;
                    }
                    s.exemplar = static_cast<std::uint32_t>(out_.exemplars.size());
                    out_.exemplars.push_back(std::move(ex));
                }
            }
        } else {
            skipBlanks();
            if (!atEnd()) {
                const std::size_t ts_col = pos_;
                std::int64_t ts = 0;
                if (!parseInt64(readToken(), ts)) {
                    return fail(ts_col, "invalid timestamp");
                }
                s.timestamp_ms = ts;
                skipBlanks();
                if (!atEnd()) {
                    return fail(pos_, "unexpected text after the timestamp");
                }
            }
        }
        if (!sortLabels(s.labels, labels_col)) {
            return false;
        }
        const std::uint32_t family = assignFamily(name, name_col);
        if (family == kNoFamily) {
            return false;
        }
        s.family = family;
        s.name = std::string(name);
        const MetricFamily& fam = out_.families[family];
        if (fam.type == MetricType::Histogram || fam.type == MetricType::GaugeHistogram) {
            if (name.size() == fam.name.size() + 7 && name.substr(fam.name.size()) == "_bucket" &&
                !checkNumericLabel(s, "le", labels_col)) {
                return false;
            }
        } else if (fam.type == MetricType::Summary && name.size() == fam.name.size() &&
                   !checkNumericLabel(s, "quantile", labels_col)) {
            return false;
        }
        if (limits_.max_samples != 0 && out_.samples.size() >= limits_.max_samples) {
            return fail(name_col, "more than " + std::to_string(limits_.max_samples) + " samples");
        }
        const auto index = static_cast<std::uint32_t>(out_.samples.size());
        series_.emplace_back(seriesHash(name, s.labels), index);
        out_.families[family].samples.push_back(index);
        out_.samples.push_back(std::move(s));
        return true;
    }

    std::string_view text_;
    bool om_;
    ExpositionFormat format_;
    const ExpositionLimits& limits_;
    ParseResult& out_;
    std::string_view line_;
    std::size_t pos_ = 0;
    std::uint32_t line_no_ = 0;
    std::uint32_t current_ = kNoFamily;
    bool saw_eof_ = false;
    std::uint32_t duplicate_of_ = 0;
    /// (series hash, sample index) of every sample, checked for duplicates at the end:
    /// sequential writes and one sort cost less than a hash-table probe per sample.
    std::vector<std::pair<std::uint64_t, std::uint32_t>> series_;
};

bool labelsMatch(const Sample& s, const std::vector<LabelMatcher>& matchers) {
    for (const auto& m : matchers) {
        const std::string* v = s.label(m.name);
        const std::string_view value = v != nullptr ? std::string_view(*v) : std::string_view();
        const bool equal = value == m.value;
        if (equal != (m.op == LabelMatcher::Op::Equal)) {
            return false;
        }
    }
    return true;
}

}  // namespace

ExpositionFormat formatFromContentType(std::string_view content_type) {
    std::size_t start = 0;
    while (start < content_type.size() && isBlank(content_type[start])) {
        ++start;
    }
    std::string_view media = content_type.substr(start);
    media = media.substr(0, media.find(';'));
    while (!media.empty() && isBlank(media.back())) {
        media.remove_suffix(1);
    }
    return equalsIgnoreCase(media, "application/openmetrics-text") ? ExpositionFormat::OpenMetrics
                                                                   : ExpositionFormat::PrometheusText;
}

std::string_view metricTypeName(MetricType type) {
    switch (type) {
        case MetricType::Unknown:
            return "unknown";
        case MetricType::Counter:
            return "counter";
        case MetricType::Gauge:
            return "gauge";
        case MetricType::Histogram:
            return "histogram";
        case MetricType::GaugeHistogram:
            return "gaugehistogram";
        case MetricType::Summary:
            return "summary";
        case MetricType::Info:
            return "info";
        case MetricType::StateSet:
            return "stateset";
    }
    return "unknown";
}

const std::string* Sample::label(std::string_view label_name) const {
    for (const auto& l : labels) {
        if (l.name == label_name) {
            return &l.value;
        }
    }
    return nullptr;
}

std::string ExpositionError::message() const {
    return "line " + std::to_string(line) + ":" + std::to_string(column) + ": " + reason;
}

const MetricFamily* ParseResult::family(std::string_view name) const {
    const auto it = family_index.find(name);
    return it == family_index.end() ? nullptr : &families[it->second];
}

std::vector<const Sample*> ParseResult::select(std::string_view sample_name,
                                               const std::vector<LabelMatcher>& matchers) const {
    std::vector<const Sample*> out;
    int families_scanned = 0;
    const auto scan = [&](const MetricFamily* fam) {
        if (fam == nullptr) {
            return;
        }
        ++families_scanned;
        for (const std::uint32_t idx : fam->samples) {
            const Sample& s = samples[idx];
            if (s.name == sample_name && labelsMatch(s, matchers)) {
                out.push_back(&s);
            }
        }
    };
    scan(family(sample_name));
    for (const std::string_view suffix : kSuffixes) {
        if (sample_name.size() > suffix.size() && sample_name.substr(sample_name.size() - suffix.size()) == suffix) {
            scan(family(sample_name.substr(0, sample_name.size() - suffix.size())));
        }
    }
    if (families_scanned > 1) {
        std::sort(out.begin(), out.end());  // samples is one vector: address order is body order
    }
    return out;
}

ParseResult parseExposition(std::string_view text, ExpositionFormat format, const ExpositionLimits& limits) {
    ParseResult result;
    Parser parser(text, format, limits, result);
    result.ok = parser.run();
    if (!result.ok) {
        result.families.clear();
        result.samples.clear();
        result.exemplars.clear();
        result.family_index.clear();
        if (result.errors.empty()) {
            result.errors.push_back({0, 0, "parse failed"});
        }
        result.errors.resize(1);
    }
    return result;
}

double histogramQuantile(double q, const std::vector<std::pair<double, double>>& input) {
    constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
    constexpr double kInf = std::numeric_limits<double>::infinity();
    if (std::isnan(q)) {
        return kNaN;
    }
    if (q < 0) {
        return -kInf;
    }
    if (q > 1) {
        return kInf;
    }
    if (input.empty()) {
        return kNaN;
    }
    std::vector<std::pair<double, double>> buckets = input;
    std::sort(buckets.begin(), buckets.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    if (!(std::isinf(buckets.back().first) && buckets.back().first > 0)) {
        return kNaN;
    }
    // Coalesce buckets with the same upper bound (e.g. le="0.2" and le="2e-1").
    std::size_t w = 0;
    for (std::size_t i = 1; i < buckets.size(); ++i) {
        if (buckets[i].first == buckets[w].first) {
            buckets[w].second += buckets[i].second;
        } else {
            buckets[++w] = buckets[i];
        }
    }
    buckets.resize(w + 1);
    // ensureMonotonic: a count lower than an earlier one is raised to it.
    double running = -kInf;
    for (auto& b : buckets) {
        if (b.second > running) {
            running = b.second;
        } else if (b.second < running) {
            b.second = running;
        }
    }
    if (buckets.size() < 2) {
        return kNaN;
    }
    const double observations = buckets.back().second;
    if (observations == 0 || std::isnan(observations)) {
        return kNaN;
    }
    double rank = q * observations;
    // The first bucket (excluding +Inf) whose cumulative count reaches the rank.
    std::size_t b = 0;
    while (b < buckets.size() - 1 && !(buckets[b].second >= rank)) {
        ++b;
    }
    if (b == buckets.size() - 1) {
        return buckets[buckets.size() - 2].first;
    }
    if (b == 0 && buckets[0].first <= 0) {
        return buckets[0].first;
    }
    double bucket_start = 0.0;
    const double bucket_end = buckets[b].first;
    double count = buckets[b].second;
    if (b > 0) {
        bucket_start = buckets[b - 1].first;
        count -= buckets[b - 1].second;
        rank -= buckets[b - 1].second;
    }
    // Clamped to the bucket: rounding put `-1 + (0.002 + 1) * 1` at 0.0020000000000000018,
    // above the bucket's upper bound 0.002 (found by fuzz_exposition). NaN stays NaN.
    return std::clamp(bucket_start + (bucket_end - bucket_start) * (rank / count), bucket_start, bucket_end);
}

std::optional<double> CounterTracker::observe(double value, std::optional<std::int64_t> created_ms) {
    if (std::isnan(value)) {
        return std::nullopt;
    }
    std::optional<double> increase;
    if (previous_) {
        const bool recreated = created_ms && created_ms_ && *created_ms != *created_ms_;
        if (recreated || value < *previous_) {
            ++resets_;
            increase = value;
        } else {
            increase = value - *previous_;
        }
    }
    previous_ = value;
    if (created_ms) {
        created_ms_ = created_ms;
    }
    return increase;
}

void CounterTracker::clear() {
    previous_.reset();
    created_ms_.reset();
}

}  // namespace rollguard::agent
