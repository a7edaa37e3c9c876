// The TOML config loader: TOML text -> a validated, typed Config plus diagnostics.
// toml++ stays inside the agent's sources (here and the toml_file hook); nothing
// toml-shaped leaves them.
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/agent/hooks.h"
#include "rollguard/agent/rule_test.h"
#include "rollguard/rules/duration.h"

namespace rollguard::agent {

namespace {

namespace fs = std::filesystem;
using Level = Diagnostic::Level;
using rules::Comparison;
using rules::MetricKind;
using rules::MetricSpec;
using rules::RuleSpec;
using rules::Severity;
using Keys = std::vector<std::string_view>;

// Thresholds written as plain numbers for latency metrics are seconds; above this a
// plain number is almost certainly milliseconds written without a unit.
constexpr double kSuspiciousLatencySeconds = 60.0;
constexpr std::int64_t kMaxLineBytesLimit = 64LL * 1024 * 1024;
constexpr std::int64_t kMaxRetries = 20;
/// The longest rule window: the store keeps at most 300 slots per window (one-hour slots
/// from 300 h), and week-long windows are already a trend, not a rollback signal.
constexpr std::chrono::nanoseconds kMaxWindow = std::chrono::hours{24 * 7};

const Keys kTopKeys{"agent", "source", "rule", "hook", "rollout"};
const Keys kRolloutKeys{"stages",      "hold",          "gate",  "manual_gate",    "on_critical",
                        "cooldown",    "max_rollbacks", "hooks", "rollback_hooks"};
const Keys kAgentKeys{"tick",          "state_dir",          "checkpoint_interval", "listen",
                      "log_level",     "log_format",         "hostname",            "dry_run",
                      "external_url",  "max_incidents",      "incident_log_lines",  "admin_token_file",
                      "preflight_interval", "readiness_preflight", "evaluation_interval"};
const Keys kSourceKeys{"name",    "type",  "paths",          "exclude",      "watch", "rotate_wait",
                       "read_from", "latency", "error", "max_line_bytes", "poll_interval",
                       "labels", "max_label_sets", "time", "timestamp", "timestamp_unit", "lateness"};
const Keys kLatencyKeys{"field", "unit", "start", "end", "timestamp_unit", "resolution", "max", "significant_figures"};
const Keys kErrorKeys{"field", "gte", "ranges", "in", "equals", "present", "any", "all"};
/// The tests an error predicate table can hold, exactly one of them.
const Keys kErrorTests{"gte", "ranges", "in", "equals", "present", "any", "all"};
const Keys kRuleKeys{"name",         "severity",        "source",     "metric",      "quantile",   "above",
                     "below",        "window",          "for",        "min_samples", "hooks",      "description",
                     "numerator",    "denominator",     "labels",     "group_by",    "max_groups", "baseline",
                     "compare",      "confidence",      "max_increase", "effect",    "breaches",   "keep_firing_for",
                     "no_data",      "on_error",        "error_budget", "delay",     "repeat_interval", "dry_run"};
const Keys kBaselineKeys{"labels", "learn", "file", "pointer"};
constexpr std::int64_t kMaxGroupsLimit = 10'000;
constexpr int kMaxBreachesWindow = 64;
const Keys kHookCommonKeys{"name", "type", "timeout", "run_if"};
const Keys kEnvFileKeys{"path", "set", "unset", "create", "backup", "follow_symlinks"};
/// toml_file hooks.
const Keys kFlagFileKeys{"path", "set", "unset", "create", "backup", "follow_symlinks"};
/// json_file hooks: the toml_file keys and `append` (JSON arrays only: see docs/config.md).
const Keys kJsonFileKeys{"path", "set", "unset", "append", "create", "backup", "follow_symlinks"};
const Keys kWebhookKeys{"url",           "headers",          "retries",          "retry_backoff",
                        "format",        "body_template",    "bearer_token_file", "bearer_token_env",
                        "secret_file",   "routing_key_file", "routing_key_env",  "spool_max_entries",
                        "spool_max_backoff"};
const Keys kAlertmanagerKeys{"url",     "headers",           "retries",          "retry_backoff",
                             "resend_interval", "bearer_token_file", "bearer_token_env"};
/// Secrets never written in the config, and where they go instead.
const std::array<std::pair<std::string_view, std::string_view>, 3> kLiteralSecrets{{
    {"bearer_token", "bearer_token_file or bearer_token_env"},
    {"secret", "secret_file"},
    {"routing_key", "routing_key_file or routing_key_env"},
}};
constexpr std::int64_t kMaxSpoolEntries = 1'000'000;
// ---- scrape sources (issue #7) ----
const Keys kSourceTypes{"json_log", "prometheus", "json", "health", "process", "promql"};
/// Keys every scrape source takes.
const Keys kScrapeCommonKeys{"name", "type", "interval", "jitter"};
/// Keys of the URL-based scrape sources (all but process).
const Keys kScrapeHttpKeys{"url",        "timeout",          "max_bytes",  "headers",
                           "bearer_token_file", "bearer_token_env", "basic_auth", "tls"};
const Keys kPrometheusKeys{"series"};
const Keys kJsonKeys{"path", "series"};
const Keys kHealthKeys{"status", "body_contains"};
const Keys kPromqlKeys{"series"};
const Keys kProcessKeys{"pid_file", "command", "cgroup", "unit"};
const Keys kBasicAuthKeys{"username", "password_file", "password_env"};
const Keys kTlsKeys{"ca_file", "cert_file", "key_file", "insecure_skip_verify"};
/// Keys of one series table, by source type; `kinds` are the mutually exclusive kind keys.
const Keys kPrometheusSeriesKeys{"gauge", "counter", "events", "histogram", "errors", "errors_above",
                                 "unit",  "by",      "max_label_sets"};
const Keys kPrometheusKinds{"gauge", "counter", "events", "histogram"};
const Keys kJsonSeriesKeys{"gauge", "counter", "events", "errors", "unit"};
const Keys kJsonKinds{"gauge", "counter", "events"};
const Keys kPromqlSeriesKeys{"query", "unit", "by", "max_label_sets"};
const Keys kPromqlKinds{"query"};
/// `unit` of a series: the multiplier to the stored unit (seconds for times).
const std::array<std::pair<std::string_view, double>, 6> kSeriesUnits{{
    {"s", 1.0},
    {"ms", 1e-3},
    {"us", 1e-6},
    {"ns", 1e-9},
    {"percent", 0.01},
    {"", 1.0},
}};
constexpr std::chrono::nanoseconds kMinScrapeInterval = std::chrono::milliseconds{100};
constexpr std::chrono::nanoseconds kMaxDefaultScrapeTimeout = std::chrono::seconds{10};

const Keys kScriptKeys{"command", "env", "inherit_env", "workdir", "user", "group", "retries", "retry_backoff"};

const char* typeName(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::none:
            return "nothing";
        case toml::node_type::table:
            return "table";
        case toml::node_type::array:
            return "array";
        case toml::node_type::string:
            return "string";
        case toml::node_type::integer:
            return "integer";
        case toml::node_type::floating_point:
            return "float";
        case toml::node_type::boolean:
            return "boolean";
        case toml::node_type::date:
            return "date";
        case toml::node_type::time:
            return "time";
        case toml::node_type::date_time:
            return "date-time";
    }
    return "unknown";
}

std::size_t levenshtein(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) {
        row[j] = j;
    }
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diag = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t up = row[j];
            const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + cost});
            diag = up;
        }
    }
    return row[b.size()];
}

/// The closest candidate within edit distance 2, else one that `word` is a prefix of
/// (or that is a prefix of `word`); empty when nothing is close.
std::string closest(std::string_view word, const std::vector<std::string_view>& candidates) {
    std::string best;
    std::size_t best_distance = 3;
    for (auto c : candidates) {
        const std::size_t d = levenshtein(word, c);
        if (d < best_distance) {
            best_distance = d;
            best = std::string(c);
        }
    }
    if (!best.empty() || word.size() < 3) {
        return best;
    }
    for (auto c : candidates) {
        if (c.size() >= 3 && (c.substr(0, word.size()) == word || word.substr(0, c.size()) == c)) {
            return std::string(c);
        }
    }
    return best;
}

std::string didYouMean(std::string_view word, const std::vector<std::string_view>& candidates) {
    const std::string c = closest(word, candidates);
    return c.empty() ? std::string() : " (did you mean '" + c + "'?)";
}

std::string joinKeys(const Keys& keys) {
    std::string out;
    for (auto k : keys) {
        if (!out.empty()) {
            out += ", ";
        }
        out += k;
    }
    return out;
}

bool contains(const Keys& keys, std::string_view k) {
    return std::find(keys.begin(), keys.end(), k) != keys.end();
}

bool isNameChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
}

bool isValidName(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), isNameChar);
}

bool isValidEnvName(std::string_view s) {
    if (s.empty() || (s[0] >= '0' && s[0] <= '9')) {
        return false;
    }
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    });
}

bool isValidHeaderName(std::string_view s) {
    // RFC 9110 token characters.
    static constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               kExtra.find(c) != std::string_view::npos;
    });
}

bool isValidFieldPath(std::string_view s) {
    if (s.empty()) {
        return false;
    }
    std::size_t start = 0;
    while (true) {
        const std::size_t dot = s.find('.', start);
        const std::string_view segment = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
        if (segment.empty()) {
            return false;
        }
        if (dot == std::string_view::npos) {
            return true;
        }
        start = dot + 1;
    }
}

bool hasLineBreak(std::string_view s) {
    return s.find_first_of("\r\n") != std::string_view::npos;
}

/// "host:port" with a non-empty host (IPv6 in brackets) and a port 0..65535.
bool isValidListen(std::string_view s) {
    std::string_view host;
    std::string_view port;
    if (!s.empty() && s.front() == '[') {
        const std::size_t close = s.find("]:");
        if (close == std::string_view::npos || close < 2) {
            return false;
        }
        host = s.substr(1, close - 1);
        port = s.substr(close + 2);
    } else {
        const std::size_t colon = s.rfind(':');
        if (colon == std::string_view::npos) {
            return false;
        }
        host = s.substr(0, colon);
        port = s.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) {
            return false;  // a bare IPv6 address needs brackets
        }
    }
    if (host.empty() || port.empty() || port.size() > 5) {
        return false;
    }
    if (host.find_first_of(" \t/") != std::string_view::npos) {
        return false;
    }
    int value = 0;
    for (char c : port) {
        if (c < '0' || c > '9') {
            return false;
        }
        value = value * 10 + (c - '0');
    }
    return value <= 65535;
}

/// TOML text of a scalar used where a string is wanted: 0 -> "0", true -> "true".
std::optional<std::string> scalarText(const toml::node& n) {
    if (const auto* s = n.as_string()) {
        return s->get();
    }
    if (const auto* i = n.as_integer()) {
        return std::to_string(i->get());
    }
    if (const auto* b = n.as_boolean()) {
        return b->get() ? "true" : "false";
    }
    if (const auto* f = n.as_floating_point()) {
        const double v = f->get();
        if (std::isnan(v)) {
            return "nan";
        }
        if (std::isinf(v)) {
            return v > 0 ? "inf" : "-inf";
        }
        std::array<char, 64> buf{};
        const auto res = std::to_chars(buf.data(), buf.data() + buf.size(), v);
        std::string text(buf.data(), res.ptr);
        if (text.find_first_of(".e") == std::string::npos) {
            text += ".0";  // as TOML writes it: 1.0, not 1
        }
        return text;
    }
    return std::nullopt;
}

std::string inQuotes(std::string_view s) {
    return "\"" + std::string(s) + "\"";
}

/// Plain-number rendering for messages: 500 -> "500", 0.25 -> "0.25".
std::string numberText(double v) {
    std::array<char, 64> buf{};
    const auto res = std::to_chars(buf.data(), buf.data() + buf.size(), v);
    return std::string(buf.data(), res.ptr);
}

struct MetricParse {
    std::optional<MetricSpec> spec;
    std::string error;  ///< why it is not a metric, when spec is empty
};

std::optional<double> parseDecimal(std::string_view s) {
    double v = 0.0;
    const auto res = std::from_chars(s.data(), s.data() + s.size(), v);
    if (res.ec != std::errc{} || res.ptr != s.data() + s.size()) {
        return std::nullopt;
    }
    return v;
}

const Keys kMetricNames{"count", "rate",     "error_ratio", "mean",  "min", "max", "stddev", "value",
                        "increase", "growth", "ratio",     "quantile", "p50", "p90", "p95",  "p99"};

/// count, rate, error_ratio, mean, min, max, pNN. pNN's digits are a percentage with an
/// implied decimal point after the first two digits (p50 = 0.5, p999 = 0.999) unless a
/// dot is written (p99.9 = 0.999). "quantile" is handled by the caller.
MetricParse parseMetricName(std::string_view s) {
    MetricParse out;
    MetricSpec m;
    m.text = std::string(s);
    static const std::array<std::pair<std::string_view, MetricKind>, 10> kPlain{{
        {"count", MetricKind::Count},
        {"rate", MetricKind::Rate},
        {"error_ratio", MetricKind::ErrorRatio},
        {"mean", MetricKind::Mean},
        {"min", MetricKind::Min},
        {"max", MetricKind::Max},
        {"stddev", MetricKind::Stddev},
        {"value", MetricKind::Value},
        {"increase", MetricKind::Increase},
        {"growth", MetricKind::Growth},
    }};
    for (const auto& [name, kind] : kPlain) {
        if (s == name) {
            m.kind = kind;
            out.spec = m;
            return out;
        }
    }
    const std::string expected =
        " (expected count, rate, error_ratio, mean, min, max, stddev, value, increase, growth, a percentile "
        "such as p50, p99, p99.9 or p999, quantile with 'quantile = 0.995', or ratio with 'numerator' and "
        "'denominator')";
    if (s.size() < 2 || s[0] != 'p') {
        out.error = "unknown metric " + inQuotes(s) + didYouMean(s, kMetricNames) + expected;
        return out;
    }
    const std::string_view digits = s.substr(1);
    const std::size_t dot = digits.find('.');
    const std::string_view whole = digits.substr(0, dot);
    const std::string_view frac = dot == std::string_view::npos ? std::string_view{} : digits.substr(dot + 1);
    const auto allDigits = [](std::string_view v) {
        return std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (whole.empty() || !allDigits(whole) || !allDigits(frac) || (dot != std::string_view::npos && frac.empty())) {
        out.error = "unknown metric " + inQuotes(s) + didYouMean(s, kMetricNames) + expected;
        return out;
    }
    if (dot == std::string_view::npos && whole.size() >= 3 && whole.substr(0, 3) == "100" &&
        whole.find_first_not_of('0', 1) == std::string_view::npos) {
        out.error = "metric " + inQuotes(s) + " is the maximum; use metric = \"max\"";
        return out;
    }
    std::optional<double> q;
    if (dot != std::string_view::npos || whole.size() <= 2) {
        const auto percent = parseDecimal(digits);
        if (percent) {
            q = *percent / 100.0;
        }
    } else {
        q = parseDecimal("0." + std::string(whole));
    }
    if (!q || !(*q > 0.0 && *q < 1.0)) {
        out.error = "metric " + inQuotes(s) +
                    " is not a percentile between 0 and 100 exclusive (use min or max for the extremes)";
        return out;
    }
    m.kind = MetricKind::Quantile;
    m.quantile = *q;
    out.spec = m;
    return out;
}

/// "p99.5" for 0.995: how a `quantile = ...` metric is named in messages and labels.
std::string quantileText(double q) {
    std::array<char, 64> buf{};
    std::snprintf(buf.data(), buf.size(), "%.10g", q * 100.0);
    return "p" + std::string(buf.data());
}

bool isAsciiAlpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool isAsciiDigit(char c) {
    return c >= '0' && c <= '9';
}

/// [a-zA-Z_:][a-zA-Z0-9_:]*, as Prometheus names metrics.
bool isMetricName(std::string_view s) {
    if (s.empty() || isAsciiDigit(s[0])) {
        return false;
    }
    return std::all_of(s.begin(), s.end(), [](char c) { return isAsciiAlpha(c) || isAsciiDigit(c) || c == '_' || c == ':'; });
}

/// [a-zA-Z_][a-zA-Z0-9_]*, as Prometheus names labels (and rollguard names series).
bool isPromLabelName(std::string_view s) {
    if (s.empty() || isAsciiDigit(s[0])) {
        return false;
    }
    return std::all_of(s.begin(), s.end(), [](char c) { return isAsciiAlpha(c) || isAsciiDigit(c) || c == '_'; });
}

/// A PromQL series selector, or why not and where (a byte offset into the text).
struct SelectorParse {
    std::optional<SeriesSelector> selector;
    std::string error;
    std::size_t offset = 0;
};

/// `metric`, `metric{}`, `metric{a="x", b!="y", c=~"re", d!~"re"}` or `{__name__="metric",
/// ...}`. Values are double- or single-quoted with the escapes \\", \\', \\\\ and \\n;
/// whitespace is allowed between tokens, a trailing comma inside the braces too. Regex
/// matchers are compiled (anchored) by LabelMatcher::make. `__name__` takes only '='.
SelectorParse parsePromSelector(std::string_view s) {
    SelectorParse out;
    SeriesSelector sel;
    sel.text = std::string(s);
    std::size_t i = 0;
    const auto fail = [&](std::size_t at, std::string why) {
        out.error = std::move(why);
        out.offset = at;
        return out;
    };
    const auto skipSpace = [&] {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) {
            ++i;
        }
    };
    const auto charText = [&](std::size_t at) { return "'" + std::string(1, s[at]) + "'"; };
    skipSpace();
    if (i < s.size() && (isAsciiAlpha(s[i]) || s[i] == '_' || s[i] == ':')) {
        const std::size_t start = i;
        while (i < s.size() && (isAsciiAlpha(s[i]) || isAsciiDigit(s[i]) || s[i] == '_' || s[i] == ':')) {
            ++i;
        }
        sel.metric = std::string(s.substr(start, i - start));
        skipSpace();
    } else if (i < s.size() && s[i] != '{') {
        return fail(i, "expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or '{', got " + charText(i));
    }
    if (i < s.size() && s[i] == '{') {
        ++i;
        while (true) {
            skipSpace();
            if (i >= s.size()) {
                return fail(i, "missing '}'");
            }
            if (s[i] == '}') {
                ++i;
                break;
            }
            if (!isAsciiAlpha(s[i]) && s[i] != '_') {
                return fail(i, "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*), got " + charText(i));
            }
            const std::size_t name_at = i;
            while (i < s.size() && (isAsciiAlpha(s[i]) || isAsciiDigit(s[i]) || s[i] == '_')) {
                ++i;
            }
            const std::string name(s.substr(name_at, i - name_at));
            skipSpace();
            using Op = rules::LabelMatcher::Op;
            Op op = Op::Equal;
            if (s.compare(i, 2, "=~") == 0) {
                op = Op::Regex;
                i += 2;
            } else if (s.compare(i, 2, "!~") == 0) {
                op = Op::NotRegex;
                i += 2;
            } else if (s.compare(i, 2, "!=") == 0) {
                op = Op::NotEqual;
                i += 2;
            } else if (i < s.size() && s[i] == '=') {
                op = Op::Equal;
                i += 1;
            } else {
                return fail(i, "expected =, !=, =~ or !~ after label '" + name + "'");
            }
            skipSpace();
            if (i >= s.size() || (s[i] != '"' && s[i] != '\'')) {
                return fail(i, "expected a quoted value after " + name + std::string(rules::toString(op)));
            }
            const char quote = s[i];
            const std::size_t value_at = i;
            ++i;
            std::string value;
            bool closed = false;
            while (i < s.size()) {
                const char c = s[i];
                if (c == quote) {
                    closed = true;
                    ++i;
                    break;
                }
                if (c == '\\') {
                    const char e = i + 1 < s.size() ? s[i + 1] : '\0';
                    if (e == '"' || e == '\'' || e == '\\') {
                        value += e;
                    } else if (e == 'n') {
                        value += '\n';
                    } else {
                        return fail(i, "unknown escape in a label value (use \\\", \\\\ or \\n)");
                    }
                    i += 2;
                    continue;
                }
                value += c;
                ++i;
            }
            if (!closed) {
                return fail(value_at, "unterminated label value");
            }
            if (name == "__name__") {
                if (op != Op::Equal) {
                    return fail(name_at, "'__name__' takes only '=': a selector reads one metric");
                }
                if (!sel.metric.empty()) {
                    return fail(name_at, "the metric name is given twice ('" + sel.metric + "' and __name__)");
                }
                if (!isMetricName(value)) {
                    return fail(value_at + 1, "\"" + value + "\" is not a valid metric name");
                }
                sel.metric = value;
            } else {
                std::string why;
                auto m = rules::LabelMatcher::make(name, op, value, why);
                if (m == nullptr) {
                    return fail(value_at + 1, "invalid regular expression \"" + value + "\": " + why);
                }
                sel.matchers.push_back(std::move(*m));
            }
            skipSpace();
            if (i < s.size() && s[i] == ',') {
                ++i;
                continue;
            }
            if (i < s.size() && s[i] == '}') {
                ++i;
                break;
            }
            return fail(i, i >= s.size() ? std::string("missing '}'") : "expected ',' or '}', got " + charText(i));
        }
        skipSpace();
    }
    if (i < s.size()) {
        return fail(i, "unexpected " + charText(i) + " after the selector");
    }
    if (sel.metric.empty()) {
        return fail(0, "no metric name (write metric{...} or {__name__=\"metric\", ...})");
    }
    out.selector = std::move(sel);
    return out;
}

/// A TOML key with its location, for messages.
struct KeyRef {
    std::string_view name;
    const toml::key* key = nullptr;
    const toml::node* node = nullptr;
};

/// Does one pass over a parsed document and produces the Config. Collects every
/// diagnostic instead of stopping at the first. Single use, single thread.
/// Replaces ${NAME} and ${NAME:-default} in a config string from the environment, as a
/// shell would (`:-` also applies when NAME is set but empty); `$${` writes a literal
/// `${`. Expansion happens on parsed string values only, so an environment value can never
/// inject TOML. Returns nullopt and sets `why` on an unset variable without a default or a
/// malformed reference.
std::optional<std::string> expandEnvironment(std::string_view text, std::string& why) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
        if (text.compare(i, 3, "$${") == 0) {
            out += "${";
            i += 3;
            continue;
        }
        if (text.compare(i, 2, "${") != 0) {
            out += text[i++];
            continue;
        }
        const auto close = text.find('}', i + 2);
        if (close == std::string_view::npos) {
            why = "unterminated ${ in " + std::string(text) + " (write $${ for a literal ${)";
            return std::nullopt;
        }
        const std::string_view inner = text.substr(i + 2, close - i - 2);
        const auto sep = inner.find(":-");
        const std::string_view name = inner.substr(0, sep);
        const bool valid_name = !name.empty() && (std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_') &&
                                std::all_of(name.begin(), name.end(), [](char c) {
                                    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
                                });
        if (!valid_name) {
            why = "'${" + std::string(inner) + "}' is not a valid environment reference (use ${NAME} or ${NAME:-default})";
            return std::nullopt;
        }
        const char* value = std::getenv(std::string(name).c_str());
        if (value != nullptr && (*value != '\0' || sep == std::string_view::npos)) {
            out += value;
        } else if (sep != std::string_view::npos) {
            out += inner.substr(sep + 2);
        } else {
            why = "environment variable " + std::string(name) + " is not set (export it, or write ${" +
                  std::string(name) + ":-default})";
            return std::nullopt;
        }
        i = close + 1;
    }
    return out;
}

class Loader {
public:
    explicit Loader(const std::string& path) : file_(path) {
        fs::path parent = fs::path(path).parent_path();
        if (parent.empty()) {
            parent = ".";
        }
        std::error_code ec;
        fs::path absolute = fs::absolute(parent, ec);
        base_dir_ = ec ? parent : absolute.lexically_normal();
    }

    LoadResult run(std::string_view text) {
        LoadResult result;
        toml::table root;
        try {
            root = toml::parse(text, std::string_view(file_));
        } catch (const toml::parse_error& e) {
            report(Level::Error, e.source().begin, std::string(e.description()));
            result.diagnostics = std::move(diags_);
            return result;
        }

        expandStrings(root);

        Config config;
        config.path = file_;
        checkKeys(root, "at top level", kTopKeys);
        if (const toml::node* agent = root.get("agent")) {
            if (const auto* t = agent->as_table()) {
                parseAgent(*t, config.agent);
            } else {
                report(Level::Error, agent->source().begin,
                       std::string("'agent' must be a table ([agent]), got ") + typeName(*agent));
            }
        }
        for (const auto* t : arrayOfTables(root, "source")) {
            parseSource(*t, config);
        }
        for (const auto* t : arrayOfTables(root, "hook")) {
            parseHook(*t, config);
        }
        for (const auto* t : arrayOfTables(root, "rule")) {
            parseRule(*t, config);
        }
        if (const toml::node* rollout = root.get("rollout")) {
            if (const auto* t = rollout->as_table()) {
                parseRollout(*t, config);
            } else {
                report(Level::Error, rollout->source().begin,
                       std::string("'rollout' must be a table ([rollout]), got ") + typeName(*rollout));
            }
        }
        checkWhole(root, config);

        std::stable_sort(diags_.begin(), diags_.end(), [](const Diagnostic& a, const Diagnostic& b) {
            return std::pair(a.where.line, a.where.column) < std::pair(b.where.line, b.where.column);
        });
        const bool failed = std::any_of(diags_.begin(), diags_.end(),
                                        [](const Diagnostic& d) { return d.level == Level::Error; });
        if (!failed) {
            result.config = std::move(config);
        }
        result.diagnostics = std::move(diags_);
        return result;
    }

protected:
    /// ${VAR} expansion of every string value, in place, before anything reads them.
    void expandStrings(toml::node& n) {
        if (auto* t = n.as_table()) {
            for (auto&& [key, value] : *t) {
                expandStrings(value);
            }
        } else if (auto* a = n.as_array()) {
            for (auto& e : *a) {
                expandStrings(e);
            }
        } else if (auto* s = n.as_string()) {
            if (s->get().find("${") == std::string::npos) {
                return;
            }
            std::string why;
            if (auto expanded = expandEnvironment(s->get(), why)) {
                s->get() = std::move(*expanded);
            } else {
                error(n, why);
            }
        }
    }

    // ---- diagnostics -------------------------------------------------------------

    SourceLocation locate(const toml::source_position& p) const {
        return SourceLocation{file_, static_cast<int>(p.line), static_cast<int>(p.column)};
    }

    void report(Level level, const toml::source_position& p, std::string message) {
        diags_.push_back(Diagnostic{level, locate(p), std::move(message)});
    }

    void report(Level level, const SourceLocation& where, std::string message) {
        diags_.push_back(Diagnostic{level, where, std::move(message)});
    }

    void error(const toml::node& n, std::string message) { report(Level::Error, n.source().begin, std::move(message)); }

    void typeError(const toml::node& n, std::string_view key, std::string_view expected) {
        error(n, "'" + std::string(key) + "' must be " + std::string(expected) + ", got " + typeName(n));
    }

    void missing(const toml::table& t, std::string_view key, std::string_view where) {
        error(t, "missing required key '" + std::string(key) + "' in " + std::string(where));
    }

    /// Unknown keys in `t`, each with a suggestion from `allowed`.
    void checkKeys(const toml::table& t, std::string_view where, const Keys& allowed) {
        for (auto&& [k, v] : t) {
            if (!contains(allowed, k.str())) {
                report(Level::Error, k.source().begin,
                       "unknown key '" + std::string(k.str()) + "' " + std::string(where) +
                           didYouMean(k.str(), allowed));
            }
        }
    }

    const toml::key* keyOf(const toml::table& t, std::string_view key) const {
        const auto it = t.find(key);
        return it == t.end() ? nullptr : &it->first;
    }

    // ---- typed getters: nullopt when absent or invalid (the latter is reported) ---

    std::optional<std::string> getString(const toml::table& t, std::string_view key) {
        const toml::node* n = t.get(key);
        if (n == nullptr) {
            return std::nullopt;
        }
        if (const auto* s = n->as_string()) {
            return s->get();
        }
        typeError(*n, key, "a string");
        return std::nullopt;
    }

    std::optional<std::string> requireString(const toml::table& t, std::string_view key, std::string_view where) {
        if (t.get(key) == nullptr) {
            missing(t, key, where);
            return std::nullopt;
        }
        auto s = getString(t, key);
        if (s && s->empty()) {
            error(*t.get(key), "'" + std::string(key) + "' must not be empty");
            return std::nullopt;
        }
        return s;
    }

    std::optional<bool> getBool(const toml::table& t, std::string_view key) {
        const toml::node* n = t.get(key);
        if (n == nullptr) {
            return std::nullopt;
        }
        if (const auto* b = n->as_boolean()) {
            return b->get();
        }
        typeError(*n, key, "a boolean (true or false)");
        return std::nullopt;
    }

    std::optional<std::int64_t> getInt(const toml::table& t, std::string_view key, std::int64_t lo, std::int64_t hi,
                                       std::string_view range_text) {
        const toml::node* n = t.get(key);
        if (n == nullptr) {
            return std::nullopt;
        }
        const auto* i = n->as_integer();
        if (i == nullptr) {
            typeError(*n, key, "an integer");
            return std::nullopt;
        }
        if (i->get() < lo || i->get() > hi) {
            error(*n, "'" + std::string(key) + "' must be " + std::string(range_text) + ", got " +
                          std::to_string(i->get()));
            return std::nullopt;
        }
        return i->get();
    }

    /// An integer or float, finite.
    std::optional<double> numberOf(const toml::node& n, std::string_view key) {
        double v = 0.0;
        if (const auto* i = n.as_integer()) {
            v = static_cast<double>(i->get());
        } else if (const auto* f = n.as_floating_point()) {
            v = f->get();
        } else {
            typeError(n, key, "a number");
            return std::nullopt;
        }
        if (!std::isfinite(v)) {
            error(n, "'" + std::string(key) + "' must be a finite number");
            return std::nullopt;
        }
        return v;
    }

    std::optional<std::chrono::nanoseconds> durationOf(const toml::node& n, std::string_view key) {
        const auto* s = n.as_string();
        if (s == nullptr) {
            typeError(n, key, "a duration string like \"5m\"");
            return std::nullopt;
        }
        auto d = rules::parseDuration(s->get());
        if (!d) {
            error(n, "'" + std::string(key) + "' is not a valid duration: " + inQuotes(s->get()) +
                         " (use a number and a unit: ns, us, ms, s, m, h, d; e.g. \"500ms\", \"30s\", \"1h30m\")");
        }
        return d;
    }

    enum class Bound { AtLeastZero, Positive };

    std::optional<std::chrono::nanoseconds> getDuration(const toml::table& t, std::string_view key, Bound bound) {
        const toml::node* n = t.get(key);
        if (n == nullptr) {
            return std::nullopt;
        }
        auto d = durationOf(*n, key);
        if (d && bound == Bound::Positive && d->count() <= 0) {
            error(*n, "'" + std::string(key) + "' must be greater than zero");
            return std::nullopt;
        }
        return d;
    }

    /// One of `choices`; reported with a suggestion otherwise.
    std::optional<std::string> getChoice(const toml::table& t, std::string_view key, const Keys& choices) {
        auto s = getString(t, key);
        if (s && !contains(choices, *s)) {
            error(*t.get(key), "'" + std::string(key) + "' must be one of " + joinKeys(choices) + "; got " +
                                   inQuotes(*s) + didYouMean(*s, choices));
            return std::nullopt;
        }
        return s;
    }

    /// An array of strings; each element with its node (for locations).
    std::optional<std::vector<std::pair<std::string, const toml::node*>>> getStringArray(const toml::table& t,
                                                                                         std::string_view key) {
        const toml::node* n = t.get(key);
        if (n == nullptr) {
            return std::nullopt;
        }
        const auto* arr = n->as_array();
        if (arr == nullptr) {
            typeError(*n, key, "an array of strings");
            return std::nullopt;
        }
        std::vector<std::pair<std::string, const toml::node*>> out;
        bool ok = true;
        for (const auto& e : *arr) {
            if (const auto* s = e.as_string()) {
                out.emplace_back(s->get(), &e);
            } else {
                error(e, "elements of '" + std::string(key) + "' must be strings, got " + typeName(e));
                ok = false;
            }
        }
        if (!ok) {
            return std::nullopt;
        }
        return out;
    }

    /// A table of scalar values as strings, in the order written. Numbers and booleans
    /// become their TOML text.
    std::optional<std::vector<std::pair<std::string, std::string>>> getStringTable(
        const toml::table& t, std::string_view key, const char* key_kind, bool (*key_ok)(std::string_view)) {
        const toml::node* n = t.get(key);
        if (n == nullptr) {
            return std::nullopt;
        }
        const auto* table = n->as_table();
        if (table == nullptr) {
            typeError(*n, key, "a table of strings, e.g. { NAME = \"value\" }");
            return std::nullopt;
        }
        struct Entry {
            toml::source_position at;
            std::string name;
            std::string value;
        };
        std::vector<Entry> entries;
        bool ok = true;
        for (auto&& [k, v] : *table) {
            const std::string name(k.str());
            if (!key_ok(name)) {
                report(Level::Error, k.source().begin,
                       "'" + name + "' in '" + std::string(key) + "' is not a valid " + key_kind);
                ok = false;
                continue;
            }
            auto text = scalarText(v);
            if (!text) {
                error(v, "values in '" + std::string(key) + "' must be strings, got " + typeName(v));
                ok = false;
                continue;
            }
            if (hasLineBreak(*text)) {
                error(v, "values in '" + std::string(key) + "' must not contain line breaks");
                ok = false;
                continue;
            }
            entries.push_back(Entry{k.source().begin, name, std::move(*text)});
        }
        if (!ok) {
            return std::nullopt;
        }
        // toml++ keeps tables sorted by key; the config order is the source order.
        std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
            return std::pair(a.at.line, a.at.column) < std::pair(b.at.line, b.at.column);
        });
        std::vector<std::pair<std::string, std::string>> out;
        out.reserve(entries.size());
        for (auto& e : entries) {
            out.emplace_back(std::move(e.name), std::move(e.value));
        }
        return out;
    }

    const toml::table* getTable(const toml::table& t, std::string_view key, std::string_view example) {
        const toml::node* n = t.get(key);
        if (n == nullptr) {
            return nullptr;
        }
        if (const auto* table = n->as_table()) {
            return table;
        }
        typeError(*n, key, "a table like " + std::string(example));
        return nullptr;
    }

    std::vector<const toml::table*> arrayOfTables(const toml::table& root, std::string_view key) {
        std::vector<const toml::table*> out;
        const toml::node* n = root.get(key);
        if (n == nullptr) {
            return out;
        }
        const auto* arr = n->as_array();
        if (arr == nullptr) {
            const std::string k(key);
            error(*n, "'" + k + "' must be an array of tables: write [[" + k + "]], not [" + k + "]");
            return out;
        }
        for (const auto& e : *arr) {
            if (const auto* t = e.as_table()) {
                out.push_back(t);
            } else {
                error(e, "elements of '" + std::string(key) + "' must be tables ([[" + std::string(key) +
                             "]]), got " + typeName(e));
            }
        }
        return out;
    }

    /// Relative paths are relative to the config file's directory, not the working
    /// directory, so a config means the same thing wherever the daemon is started.
    std::string resolvePath(const std::string& p) const {
        const fs::path path(p);
        if (path.is_absolute()) {
            return p;
        }
        return (base_dir_ / path).lexically_normal().string();
    }

    /// A [[kind]] name: required, [A-Za-z0-9_.-]+, unique among its kind.
    std::optional<std::string> parseName(const toml::table& t, std::string_view where,
                                         std::map<std::string, SourceLocation>& seen, std::string_view kind) {
        auto name = requireString(t, "name", where);
        if (!name) {
            return std::nullopt;
        }
        const toml::node& n = *t.get("name");
        if (!isValidName(*name)) {
            error(n, "'name' must use only letters, digits, '_', '.' and '-', got " + inQuotes(*name));
            return std::nullopt;
        }
        const auto [it, inserted] = seen.emplace(*name, locate(n.source().begin));
        if (!inserted) {
            const SourceLocation& first = it->second;
            error(n, "duplicate " + std::string(kind) + " name '" + *name + "' (first defined at " +
                         std::to_string(first.line) + ":" + std::to_string(first.column) + ")");
        }
        return name;
    }

    // ---- sections ----------------------------------------------------------------

    void parseAgent(const toml::table& t, AgentSettings& agent) {
        checkKeys(t, "in [agent]", kAgentKeys);
        if (auto d = getDuration(t, "tick", Bound::Positive)) {
            agent.tick = *d;
        }
        if (auto d = getDuration(t, "evaluation_interval", Bound::Positive)) {
            // Evaluations fall on a grid that contains every tick: the ticks are where the
            // counted history steps (M-of-N, learned baselines, event-time groups).
            if (*d > agent.tick || agent.tick.count() % d->count() != 0) {
                error(*t.get("evaluation_interval"),
                      "'evaluation_interval' = " + rules::formatDuration(*d) + " must divide 'tick' (" +
                          rules::formatDuration(agent.tick) + ") evenly, e.g. \"100ms\" for a tick of 1s");
            } else {
                agent.evaluation_interval = *d;
            }
        }
        if (auto s = getString(t, "state_dir")) {
            agent.state_dir = s->empty() ? std::string() : resolvePath(*s);
        }
        if (auto d = getDuration(t, "checkpoint_interval", Bound::Positive)) {
            agent.checkpoint_interval = *d;
        }
        if (auto s = getString(t, "listen")) {
            if (s->empty() || isValidListen(*s)) {
                agent.listen = *s;
            } else {
                error(*t.get("listen"),
                      "'listen' must be \"host:port\" (e.g. \"127.0.0.1:9464\", \"[::1]:9464\") or \"\" to disable, "
                      "got " +
                          inQuotes(*s));
            }
        }
        if (auto s = getChoice(t, "log_level", {"trace", "debug", "info", "warn", "error"})) {
            agent.log_level = *s;
        }
        if (auto s = getChoice(t, "log_format", {"text", "json"})) {
            agent.log_format = *s == "json" ? LogFormat::Json : LogFormat::Text;
        }
        if (auto s = getString(t, "hostname")) {
            agent.hostname = *s;
        }
        if (auto b = getBool(t, "dry_run")) {
            agent.dry_run = *b;
        }
        if (auto n = getInt(t, "max_incidents", 1, 100000, "between 1 and 100000")) {
            agent.max_incidents = static_cast<std::size_t>(*n);
        }
        if (auto n = getInt(t, "incident_log_lines", 0, 1000, "between 0 and 1000")) {
            agent.incident_log_lines = static_cast<std::size_t>(*n);
        }
        if (auto s = getString(t, "admin_token_file")) {
            agent.admin_token_file = s->empty() ? std::string() : resolvePath(*s);
        }
        if (auto d = getDuration(t, "preflight_interval", Bound::AtLeastZero)) {
            // Each pass may look host names up: a pass every few milliseconds would be a
            // DNS flood, not a check.
            if (d->count() != 0 && *d < std::chrono::seconds{1}) {
                error(*t.get("preflight_interval"),
                      "'preflight_interval' must be \"0s\" (check at start and on reload only) or at least \"1s\"");
            } else {
                agent.preflight_interval = *d;
            }
        }
        if (auto s = getChoice(t, "readiness_preflight", {"critical", "all", "off"})) {
            agent.readiness_preflight = *s == "all"   ? ReadinessPreflight::All
                                        : *s == "off" ? ReadinessPreflight::Off
                                                      : ReadinessPreflight::Critical;
        }
        if (auto s = getString(t, "external_url")) {
            if (s->empty() || s->rfind("http://", 0) == 0 || s->rfind("https://", 0) == 0) {
                if (refuseUserinfo(*t.get("external_url"), "external_url", *s,
                                   "it is a link shown to people: remove it")) {
                    agent.external_url = *s;
                }
            } else {
                error(*t.get("external_url"),
                      "'external_url' must start with http:// or https://, got " + inQuotes(*s));
            }
        }
    }

    void parseSource(const toml::table& t, Config& config) {
        const std::string_view where = "[[source]]";
        if (const toml::node* tn = t.get("type"); tn != nullptr && tn->is_string()) {
            if (auto scrape = scrapeTypeOf(tn->as_string()->get())) {
                parseScrape(t, *scrape, config);
                return;
            }
        }
        checkSourceKeys(t, "json_log");
        LogSourceConfig s;
        s.location = locate(t.source().begin);
        auto name = parseName(t, where, source_names_, "source");

        if (auto type = requireString(t, "type", where)) {
            if (*type != "json_log") {
                error(*t.get("type"), "unsupported source type '" + *type + "'" + didYouMean(*type, kSourceTypes) +
                                          " (supported: " + joinKeys(kSourceTypes) + ")");
            }
        }

        if (t.get("paths") == nullptr) {
            missing(t, "paths", where);
        } else if (auto paths = getStringArray(t, "paths")) {
            if (paths->empty()) {
                error(*t.get("paths"), "'paths' must list at least one file or glob pattern");
            }
            for (const auto& [p, node] : *paths) {
                if (p.empty()) {
                    error(*node, "'paths' must not contain an empty path");
                } else {
                    s.paths.push_back(resolvePath(p));
                }
            }
        }

        if (auto excludes = getStringArray(t, "exclude")) {
            for (const auto& [p, node] : *excludes) {
                if (p.empty()) {
                    error(*node, "'exclude' must not contain an empty pattern");
                } else if (p.find('/') == std::string::npos) {
                    s.exclude.push_back(p);  // no slash: matched against the file name alone
                } else {
                    s.exclude.push_back(resolvePath(p));
                }
            }
        }
        if (auto w = getChoice(t, "watch", {"auto", "poll"})) {
            s.watch = *w == "poll" ? WatchMode::Poll : WatchMode::Auto;
        }
        if (auto d = getDuration(t, "rotate_wait", Bound::AtLeastZero)) {
            s.rotate_wait = *d;
        }

        if (auto r = getChoice(t, "read_from", {"beginning", "end"})) {
            s.read_from = *r == "beginning" ? ReadFrom::Beginning : ReadFrom::End;
        }

        bool latency_declared = t.get("latency") != nullptr;
        if (const auto* lt = getTable(t, "latency", "{ field = \"duration_ms\", unit = \"ms\" }")) {
            s.latency = parseLatency(*lt);
        }
        if (const auto* et = getTable(t, "error", "{ field = \"status\", gte = 500 }")) {
            parseError(*et, s.error, "[[source]].error");
        }
        if (auto n = getInt(t, "max_line_bytes", 1, kMaxLineBytesLimit, "between 1 and 67108864 (64 MiB)")) {
            s.max_line_bytes = static_cast<std::size_t>(*n);
        }
        if (auto d = getDuration(t, "poll_interval", Bound::Positive)) {
            s.poll_interval = *d;
        }
        parseLabelsAndTime(t, s);
        if (name) {
            s.name = *name;
            source_has_latency_.emplace(*name, latency_declared);
            config.sources.push_back(std::move(s));
        }
    }

    // ---- scrape sources ------------------------------------------------------------

    static std::optional<ScrapeType> scrapeTypeOf(std::string_view s) {
        for (ScrapeType t : {ScrapeType::Prometheus, ScrapeType::Json, ScrapeType::Health, ScrapeType::Process,
                             ScrapeType::Promql}) {
            if (s == toString(t)) {
                return t;
            }
        }
        return std::nullopt;
    }

    /// Every key a [[source]] of `type` (one of kSourceTypes) takes.
    static Keys sourceKeys(std::string_view type) {
        if (type == "json_log") {
            return kSourceKeys;
        }
        Keys out = kScrapeCommonKeys;
        const auto add = [&](const Keys& keys) { out.insert(out.end(), keys.begin(), keys.end()); };
        if (type != "process") {
            add(kScrapeHttpKeys);
        }
        if (type == "prometheus") {
            add(kPrometheusKeys);
        } else if (type == "json") {
            add(kJsonKeys);
        } else if (type == "health") {
            add(kHealthKeys);
        } else if (type == "promql") {
            add(kPromqlKeys);
        } else if (type == "process") {
            add(kProcessKeys);
        }
        return out;
    }

    /// "a", "a and b", "a, b and c".
    static std::string joinAnd(const std::vector<std::string_view>& items) {
        std::string out;
        for (std::size_t i = 0; i < items.size(); ++i) {
            out += (i == 0 ? "" : i + 1 == items.size() ? " and " : ", ") + std::string(items[i]);
        }
        return out;
    }

    /// Unknown keys of a [[source]] of `type`; a key that belongs to other source types
    /// says which.
    void checkSourceKeys(const toml::table& t, std::string_view type) {
        const Keys allowed = sourceKeys(type);
        for (auto&& [k, v] : t) {
            const std::string_view key = k.str();
            if (contains(allowed, key)) {
                continue;
            }
            std::string message;
            std::vector<std::string_view> owners;
            for (std::string_view other : kSourceTypes) {
                if (contains(sourceKeys(other), key)) {
                    owners.push_back(other);
                }
            }
            if (key == "bearer_token") {
                message = "'bearer_token' must not be written in the config (it would end up in backups and diffs): "
                          "use bearer_token_file or bearer_token_env";
            } else if (type == "process" && contains(kScrapeHttpKeys, key)) {
                message = "'" + std::string(key) + "' is not used by a process source (it reads /proc, not a URL)";
            } else if (!owners.empty()) {
                message = "'" + std::string(key) + "' is only used by " + joinAnd(owners) + " sources";
            } else {
                message = "unknown key '" + std::string(key) + "' in [[source]]" +
                          (type == "json_log" ? std::string() : " of type " + std::string(type)) +
                          didYouMean(key, allowed);
            }
            report(Level::Error, k.source().begin, std::move(message));
        }
    }

    /// The keys among `keys` that `t` has, in the order written.
    std::vector<KeyRef> presentKeys(const toml::table& t, const Keys& keys) const {
        std::vector<KeyRef> out;
        for (std::string_view k : keys) {
            if (const toml::key* key = keyOf(t, k)) {
                out.push_back(KeyRef{k, key, t.get(k)});
            }
        }
        std::sort(out.begin(), out.end(), [](const KeyRef& a, const KeyRef& b) {
            const auto& pa = a.key->source().begin;
            const auto& pb = b.key->source().begin;
            return std::pair(pa.line, pa.column) < std::pair(pb.line, pb.column);
        });
        return out;
    }

    /// "'a', 'b', 'c' or 'd'".
    static std::string quotedOr(const Keys& keys) {
        std::string out;
        for (std::size_t i = 0; i < keys.size(); ++i) {
            out += (i == 0 ? "" : i + 1 == keys.size() ? " or " : ", ") + ("'" + std::string(keys[i]) + "'");
        }
        return out;
    }

    void parseScrape(const toml::table& t, ScrapeType type, Config& config) {
        const std::string type_name = toString(type);
        const std::string where = "[[source]] of type " + type_name;
        checkSourceKeys(t, type_name);
        ScrapeSourceConfig s;
        s.type = type;
        s.location = locate(t.source().begin);
        auto name = parseName(t, "[[source]]", source_names_, "source");

        const bool http = type != ScrapeType::Process;
        const bool json_file = type == ScrapeType::Json && t.get("path") != nullptr;
        if (type == ScrapeType::Json) {
            if (t.get("url") != nullptr && t.get("path") != nullptr) {
                const auto keys = presentKeys(t, {"url", "path"});
                report(Level::Error, keys[1].key->source().begin,
                       "a json source takes exactly one of 'url' or 'path', not both");
            } else if (t.get("url") == nullptr && t.get("path") == nullptr) {
                error(t, "a json source needs 'url' (a document fetched over HTTP) or 'path' (a local JSON file)");
            } else if (json_file) {
                if (auto p = requireString(t, "path", where)) {
                    s.path = resolvePath(*p);
                }
            }
        }
        if (http && (type != ScrapeType::Json || t.get("url") != nullptr)) {
            parseScrapeUrl(t, s, where);
        }

        if (auto d = getDuration(t, "interval", Bound::Positive)) {
            if (*d < kMinScrapeInterval) {
                error(*t.get("interval"), "'interval' must be at least " + rules::formatDuration(kMinScrapeInterval) +
                                              ", got " + rules::formatDuration(*d));
            } else {
                s.interval = *d;
            }
        }
        s.timeout = std::min(s.interval, kMaxDefaultScrapeTimeout);
        if (auto d = getDuration(t, "timeout", Bound::Positive)) {
            if (*d > s.interval) {
                error(*t.get("timeout"), "timeout must not exceed interval (" + rules::formatDuration(*d) + " > " +
                                             rules::formatDuration(s.interval) + ")");
            } else {
                s.timeout = *d;
            }
        }
        if (auto b = getBool(t, "jitter")) {
            s.jitter = *b;
        }
        if (auto n = getInt(t, "max_bytes", 0, std::numeric_limits<std::int64_t>::max(), "at least 0 (0 = no cap)")) {
            s.max_bytes = static_cast<std::size_t>(*n);
        }
        if (http) {
            if (json_file) {
                for (std::string_view k : {"headers", "bearer_token_file", "bearer_token_env", "basic_auth", "tls"}) {
                    if (const toml::key* key = keyOf(t, k)) {
                        report(Level::Error, key->source().begin,
                               "'" + std::string(k) + "' is only used with 'url' (this json source reads a file)");
                    }
                }
            } else {
                parseScrapeHttp(t, s);
            }
        }
        switch (type) {
            case ScrapeType::Prometheus:
            case ScrapeType::Json:
            case ScrapeType::Promql:
                parseSeriesTable(t, s);
                break;
            case ScrapeType::Health:
                parseHealth(t, s);
                break;
            case ScrapeType::Process:
                parseProcess(t, s, where);
                break;
        }
        if (name) {
            s.name = *name;
            std::vector<std::string> series;
            for (auto& stream : scrapeStreams(s)) {
                series.push_back(stream.name.substr(s.name.size() + 1));
                streams_.emplace(stream.name, std::move(stream));
            }
            scrape_series_.emplace(s.name, std::make_pair(type_name, std::move(series)));
            config.scrapes.push_back(std::move(s));
        }
    }

    /// Headers whose value is a credential: written in the config they would end up in
    /// backups, diffs and `rollguard check` output, so every HTTP table (scrape sources and
    /// hooks alike) refuses them and names the *_file/_env key to use instead.
    static bool isSecretHeader(std::string_view name) {
        std::string lower(name);
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        return lower == "authorization" || lower == "proxy-authorization" || lower == "cookie";
    }

    /// The 'headers' table of a scrape source or an HTTP hook: an error at each credential
    /// header (isSecretHeader; `instead` says what to use), which is left out of the result.
    std::optional<std::vector<std::pair<std::string, std::string>>> parseHeaders(const toml::table& t,
                                                                                  std::string_view instead) {
        if (const toml::node* hn = t.get("headers"); hn != nullptr && hn->is_table()) {
            for (auto&& [k, v] : *hn->as_table()) {
                if (isSecretHeader(k.str())) {
                    report(Level::Error, k.source().begin,
                           "'" + std::string(k.str()) + "' must not be set in 'headers' (a secret in the config): use " +
                               std::string(instead));
                }
            }
        }
        auto headers = getStringTable(t, "headers", "HTTP header name", isValidHeaderName);
        if (headers) {
            std::erase_if(*headers, [](const auto& kv) { return isSecretHeader(kv.first); });
        }
        return headers;
    }

    /// False, with an error at `n`, when `url` carries userinfo ("user:password@host"): a
    /// password there ends up in backups, diffs, logs and the status page. `instead` says
    /// where the credential goes.
    bool refuseUserinfo(const toml::node& n, std::string_view key, std::string_view url, std::string_view instead) {
        const auto scheme = url.find("://");
        if (scheme == std::string_view::npos) {
            return true;
        }
        const std::string_view rest = url.substr(scheme + 3);
        const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
        if (authority.find('@') == std::string_view::npos) {
            return true;
        }
        error(n, "'" + std::string(key) + "' must not contain a user name or password (\"user:password@\"): " +
                     std::string(instead));
        return false;
    }

    void parseScrapeUrl(const toml::table& t, ScrapeSourceConfig& s, std::string_view where) {
        auto url = requireString(t, "url", where);
        if (!url) {
            return;
        }
        const toml::node& n = *t.get("url");
        const bool http = url->rfind("http://", 0) == 0;
        const bool https = url->rfind("https://", 0) == 0;
        if ((!http && !https) || url->size() == (http ? 7U : 8U)) {
            error(n, "'url' must start with http:// or https:// and name a host, got " + inQuotes(*url));
            return;
        }
        if (url->find_first_of(" \t\r\n") != std::string::npos) {
            error(n, "'url' must not contain spaces or line breaks (percent-encode them), got " + inQuotes(*url));
            return;
        }
        if (!refuseUserinfo(n, "url", *url, "use bearer_token_file/_env or basic_auth")) {
            return;
        }
        if (s.type == ScrapeType::Promql && url->find("/api/v1/query") != std::string::npos) {
            report(Level::Warning, n.source().begin,
                   "'url' of a promql source is the API base URL (e.g. \"http://prometheus:9090\"): queries go to "
                   "<url>/api/v1/query");
        }
        s.url = *url;
    }

    /// headers, bearer token, basic_auth and tls of a URL-based scrape source.
    void parseScrapeHttp(const toml::table& t, ScrapeSourceConfig& s) {
        if (auto headers = parseHeaders(t, "bearer_token_file/_env or basic_auth")) {
            s.headers = std::move(*headers);
        }
        parseSecretSource(t, "bearer_token", s.bearer_token_file, s.bearer_token_env);
        if (const auto* bt = getTable(t, "basic_auth", "{ username = \"u\", password_file = \"/run/secrets/pw\" }")) {
            bool literal = false;
            for (auto&& [k, v] : *bt) {
                if (k.str() == "password") {
                    literal = true;
                    report(Level::Error, k.source().begin,
                           "'password' must not be written in the config (it would end up in backups and diffs): use "
                           "password_file or password_env");
                } else if (!contains(kBasicAuthKeys, k.str())) {
                    report(Level::Error, k.source().begin,
                           "unknown key '" + std::string(k.str()) + "' in 'basic_auth'" +
                               didYouMean(k.str(), kBasicAuthKeys));
                }
            }
            if (auto u = requireString(*bt, "username", "'basic_auth'")) {
                if (u->find(':') != std::string::npos || hasLineBreak(*u)) {
                    error(*bt->get("username"), "'username' must not contain ':' or line breaks (RFC 7617)");
                } else {
                    s.basic_username = *u;
                }
            }
            parseSecretSource(*bt, "password", s.basic_password_file, s.basic_password_env);
            if (!literal && bt->get("password_file") == nullptr && bt->get("password_env") == nullptr) {
                error(*bt, "'basic_auth' needs 'password_file' or 'password_env'");
            }
            if (t.get("bearer_token_file") != nullptr || t.get("bearer_token_env") != nullptr) {
                error(*t.get("basic_auth"), "set either 'basic_auth' or a bearer token (bearer_token_file/_env), not "
                                            "both");
            }
        }
        if (const auto* tt = getTable(t, "tls", "{ ca_file = \"/etc/ssl/ca.pem\" }")) {
            checkKeys(*tt, "in 'tls'", kTlsKeys);
            for (const char* key : {"ca_file", "cert_file", "key_file"}) {
                if (auto f = getString(*tt, key)) {
                    if (f->empty()) {
                        error(*tt->get(key), "'" + std::string(key) + "' must not be empty");
                    } else {
                        const std::string key_view(key);
                        (key_view == "ca_file" ? s.ca_file : key_view == "cert_file" ? s.cert_file : s.key_file) =
                            resolvePath(*f);
                    }
                }
            }
            if (auto b = getBool(*tt, "insecure_skip_verify")) {
                s.insecure_skip_verify = *b;
            }
            const bool cert = tt->get("cert_file") != nullptr;
            const bool key = tt->get("key_file") != nullptr;
            if (cert != key) {
                error(*tt->get(cert ? "cert_file" : "key_file"),
                      std::string("'cert_file' and 'key_file' go together (a client certificate and its key); '") +
                          (cert ? "key_file" : "cert_file") + "' is missing");
            }
            if (s.url.rfind("http://", 0) == 0) {
                report(Level::Warning, t.get("tls")->source().begin,
                       "'tls' has no effect on an http:// URL (use https://)");
            }
        }
    }

    void parseSeriesTable(const toml::table& t, ScrapeSourceConfig& s) {
        const char* example = s.type == ScrapeType::Json       ? "gauge = \"/queue/depth\""
                              : s.type == ScrapeType::Promql ? "query = 'sum(rate(http_requests_total[5m]))'"
                                                               : "counter = 'messages_lost_total'";
        const std::string none = std::string("no series: add [source.series.NAME] with what to read, e.g. ") + example;
        const toml::node* n = t.get("series");
        if (n == nullptr) {
            error(t, none);
            return;
        }
        const auto* table = n->as_table();
        if (table == nullptr) {
            typeError(*n, "series",
                      std::string("a table of named series, e.g. [source.series.NAME] with ") + example);
            return;
        }
        if (table->empty()) {
            error(*n, none);
            return;
        }
        struct Entry {
            const toml::key* key;
            const toml::node* node;
        };
        std::vector<Entry> entries;
        for (auto&& [k, v] : *table) {
            entries.push_back(Entry{&k, &v});
        }
        // toml++ keeps tables sorted by key; the config order is the source order.
        std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
            const auto& pa = a.key->source().begin;
            const auto& pb = b.key->source().begin;
            return std::pair(pa.line, pa.column) < std::pair(pb.line, pb.column);
        });
        for (const auto& [key, node] : entries) {
            const std::string name(key->str());
            if (!isPromLabelName(name)) {
                report(Level::Error, key->source().begin,
                       "series name " + inQuotes(name) + " must match [a-zA-Z_][a-zA-Z0-9_]*");
                continue;
            }
            if (name == "up" || name == "checks") {
                report(Level::Error, key->source().begin,
                       "series name '" + name + "' is reserved (rollguard's own 'up' and 'checks' series)");
                continue;
            }
            const auto* st = node->as_table();
            if (st == nullptr) {
                error(*node, "series '" + name + "' must be a table, e.g. { " + example + " }, got " + typeName(*node));
                continue;
            }
            if (auto series = parseSeries(*st, name, s.type)) {
                s.series.push_back(std::move(*series));
            }
        }
    }

    static const Keys& seriesKeys(ScrapeType type) {
        return type == ScrapeType::Prometheus ? kPrometheusSeriesKeys
               : type == ScrapeType::Json     ? kJsonSeriesKeys
                                              : kPromqlSeriesKeys;
    }

    std::optional<ScrapeSeriesConfig> parseSeries(const toml::table& st, const std::string& name, ScrapeType type) {
        const Keys& keys = seriesKeys(type);
        const Keys& kinds = type == ScrapeType::Prometheus ? kPrometheusKinds
                            : type == ScrapeType::Json     ? kJsonKinds
                                                           : kPromqlKinds;
        for (auto&& [k, v] : st) {
            const std::string_view key = k.str();
            if (contains(keys, key)) {
                continue;
            }
            std::string message;
            std::vector<std::string_view> owners;
            for (ScrapeType other : {ScrapeType::Prometheus, ScrapeType::Json, ScrapeType::Promql}) {
                if (contains(seriesKeys(other), key)) {
                    owners.push_back(toString(other));
                }
            }
            if (type == ScrapeType::Json && (key == "by" || key == "max_label_sets")) {
                message = "'" + std::string(key) + "' is not used by json series: JSON values have no labels";
            } else if (!owners.empty()) {
                message = "'" + std::string(key) + "' is only used by " + joinAnd(owners) + " series";
            } else {
                message = "unknown key '" + std::string(key) + "' in series '" + name + "'" + didYouMean(key, keys);
            }
            report(Level::Error, k.source().begin, std::move(message));
        }
        const auto given = presentKeys(st, kinds);
        if (given.empty()) {
            error(st, "series '" + name + "' needs " + (kinds.size() == 1 ? "" : "exactly one of ") + quotedOr(kinds));
            return std::nullopt;
        }
        if (given.size() > 1) {
            report(Level::Error, given[1].key->source().begin,
                   "series '" + name + "' takes exactly one of " + quotedOr(kinds) + "; '" +
                       std::string(given[0].name) + "' is already set");
            return std::nullopt;
        }
        using Kind = ScrapeSeriesConfig::Kind;
        ScrapeSeriesConfig c;
        c.name = name;
        c.location = locate(st.source().begin);
        const std::string_view kind_key = given[0].name;
        c.kind = kind_key == "gauge"     ? Kind::Gauge
                 : kind_key == "counter" ? Kind::Counter
                 : kind_key == "events"  ? Kind::Events
                 : kind_key == "histogram" ? Kind::Histogram
                                           : Kind::Query;
        bool ok = true;
        const toml::node& kn = *given[0].node;
        if (c.kind == Kind::Query) {
            const auto* q = kn.as_string();
            if (q == nullptr) {
                typeError(kn, "query", "a PromQL expression string");
                ok = false;
            } else if (q->get().find_first_not_of(" \t\r\n") == std::string::npos) {
                error(kn, "'query' must not be empty");
                ok = false;
            } else {
                c.query = q->get();
            }
        } else if (auto sel = parseSelectorNode(kn, kind_key, type)) {
            c.selector = std::move(*sel);
        } else {
            ok = false;
        }
        // A key of another source type's series is reported above, once.
        if (const toml::node* en = contains(keys, "errors") ? st.get("errors") : nullptr) {
            if (c.kind != Kind::Events) {
                error(*en, "'errors' is only used with 'events' (the failed ones among the counted events)");
                ok = false;
            } else if (auto sel = parseSelectorNode(*en, "errors", type)) {
                c.errors = std::move(*sel);
            } else {
                ok = false;
            }
        }
        if (const toml::node* an = contains(keys, "errors_above") ? st.get("errors_above") : nullptr) {
            if (c.kind != Kind::Histogram) {
                error(*an, "'errors_above' is only used with 'histogram'");
                ok = false;
            } else if (an->is_string()) {
                if (auto d = durationOf(*an, "errors_above")) {
                    c.errors_above = std::chrono::duration<double>(*d).count();
                } else {
                    ok = false;
                }
            } else if (!an->is_number()) {
                typeError(*an, "errors_above", "a duration string like \"1s\" or a number of seconds");
                ok = false;
            } else if (auto v = numberOf(*an, "errors_above"); v && *v >= 0.0) {
                c.errors_above = *v;
            } else {
                if (v) {
                    error(*an, "'errors_above' must not be negative, got " + numberText(*v));
                }
                ok = false;
            }
        }
        if (auto u = contains(keys, "unit") ? getString(st, "unit") : std::nullopt) {
            const auto* unit = std::find_if(kSeriesUnits.begin(), kSeriesUnits.end(),
                                            [&](const auto& e) { return e.first == *u; });
            if (unit == kSeriesUnits.end()) {
                const Keys names{"s", "ms", "us", "ns", "percent"};
                error(*st.get("unit"), "'unit' must be one of s, ms, us, ns, percent or \"\" (as read); got " +
                                           inQuotes(*u) + didYouMean(*u, names));
                ok = false;
            } else if (c.kind == Kind::Events) {
                error(*st.get("unit"), "'unit' is not used with 'events': events are counted");
                ok = false;
            } else if (c.kind == Kind::Histogram && (unit->first == "percent" || unit->first.empty())) {
                error(*st.get("unit"), "a histogram's 'unit' is that of its 'le' bounds: s, ms, us or ns");
                ok = false;
            } else {
                c.scale = unit->second;
            }
        }
        if (!contains(keys, "by")) {
            // json: reported above
        } else if (auto by = getStringArray(st, "by")) {
            for (auto& [label, node] : *by) {
                if (!isPromLabelName(label) || label.rfind("__", 0) == 0) {
                    error(*node, "'" + label + "' in 'by' is not a valid label name (letters, digits and '_', not "
                                               "starting with a digit or \"__\")");
                    ok = false;
                } else if (c.kind == Kind::Histogram && label == "le") {
                    error(*node, "'le' is the histogram's bucket bound, not a label to keep");
                    ok = false;
                } else if (std::find(c.by.begin(), c.by.end(), label) != c.by.end()) {
                    error(*node, "label '" + label + "' is listed twice in 'by'");
                    ok = false;
                } else {
                    c.by.push_back(label);
                }
            }
        } else if (st.get("by") != nullptr) {
            ok = false;
        }
        if (auto n = contains(keys, "max_label_sets") ? getInt(st, "max_label_sets", 1, 100000, "between 1 and 100000")
                                                      : std::nullopt) {
            c.max_label_sets = static_cast<std::size_t>(*n);
            if (st.get("by") == nullptr) {
                report(Level::Warning, st.get("max_label_sets")->source().begin,
                       "'max_label_sets' has no effect without 'by'");
            }
        }
        if (!ok) {
            return std::nullopt;
        }
        return c;
    }

    /// A prometheus selector or a json pointer in `n`; reported (at the column inside
    /// the string when the string is written without escapes on one line) otherwise.
    std::optional<SeriesSelector> parseSelectorNode(const toml::node& n, std::string_view key, ScrapeType type) {
        const auto* str = n.as_string();
        if (str == nullptr) {
            typeError(n, key,
                      type == ScrapeType::Json ? "a JSON Pointer string like \"/queue/depth\""
                                               : "a series selector string like 'http_requests_total{code=~\"5..\"}'");
            return std::nullopt;
        }
        const std::string& text = str->get();
        if (type == ScrapeType::Json) {
            std::string why;
            if (text.empty() || text.front() != '/') {
                error(n, "'" + std::string(key) + "' must be a JSON Pointer starting with '/', e.g. \"/queue/depth\"; "
                                                  "got " + inQuotes(text));
                return std::nullopt;
            }
            if (!parseJsonPointer(text, &why)) {
                error(n, inQuotes(text) + " in '" + std::string(key) + "' is not a JSON Pointer: " + why);
                return std::nullopt;
            }
            SeriesSelector sel;
            sel.metric = text;
            sel.text = text;
            return sel;
        }
        SelectorParse parsed = parsePromSelector(text);
        if (parsed.selector) {
            return std::move(parsed.selector);
        }
        toml::source_position at = n.source().begin;
        const toml::source_position end = n.source().end;
        // Only when the raw string is the value between two quotes do offsets map to columns.
        if (at.line == end.line && static_cast<std::size_t>(end.column - at.column) == text.size() + 2) {
            at.column = static_cast<toml::source_index>(at.column + 1 + parsed.offset);
        }
        report(Level::Error, at, "invalid selector in '" + std::string(key) + "': " + parsed.error);
        return std::nullopt;
    }

    void parseHealth(const toml::table& t, ScrapeSourceConfig& s) {
        if (const toml::node* n = t.get("status")) {
            const auto* arr = n->as_array();
            if (arr == nullptr) {
                typeError(*n, "status", "an array of status codes and classes, e.g. [200, 204, \"3xx\"]");
            } else if (arr->empty()) {
                error(*n, "'status' must list at least one code or class such as \"2xx\" (leave it out for 2xx)");
            } else {
                for (const auto& e : *arr) {
                    if (const auto* i = e.as_integer(); i != nullptr && i->get() >= 100 && i->get() <= 599) {
                        const int code = static_cast<int>(i->get());
                        s.status.emplace_back(code, code);
                        continue;
                    }
                    if (const auto* str = e.as_string(); str != nullptr && str->get().size() == 3 &&
                                                         str->get()[0] >= '1' && str->get()[0] <= '5' &&
                                                         (str->get().substr(1) == "xx" || str->get().substr(1) == "XX")) {
                        const int base = (str->get()[0] - '0') * 100;
                        s.status.emplace_back(base, base + 99);
                        continue;
                    }
                    const auto text = scalarText(e);
                    error(e, "elements of 'status' are status codes 100..599 or classes \"1xx\" to \"5xx\", got " +
                                 (text ? (e.is_string() ? inQuotes(*text) : *text) : std::string(typeName(e))));
                }
            }
        }
        if (auto b = getString(t, "body_contains")) {
            s.body_contains = *b;
        }
    }

    void parseProcess(const toml::table& t, ScrapeSourceConfig& s, std::string_view where) {
        const auto given = presentKeys(t, kProcessKeys);
        if (given.empty()) {
            error(t, "a process source needs exactly one of " + quotedOr(kProcessKeys) +
                         ", e.g. command = \"nginx\"");
            return;
        }
        if (given.size() > 1) {
            report(Level::Error, given[1].key->source().begin,
                   "a process source takes exactly one of " + quotedOr(kProcessKeys) + "; '" +
                       std::string(given[0].name) + "' is already set");
            return;
        }
        const std::string_view key = given[0].name;
        auto value = requireString(t, key, where);
        if (!value) {
            return;
        }
        const toml::node& n = *given[0].node;
        if (key == "pid_file") {
            s.process.kind = ProcessSelector::PidFile;
            s.process.value = resolvePath(*value);
        } else if (key == "command") {
            if (value->find('/') != std::string::npos) {
                error(n, "'command' is an exact process name such as \"nginx\", without '/' (use pid_file for a "
                         "path); got " + inQuotes(*value));
                return;
            }
            s.process.kind = ProcessSelector::Name;
            s.process.value = *value;
        } else if (key == "cgroup") {
            const fs::path p(*value);
            if (std::any_of(p.begin(), p.end(), [](const fs::path& c) { return c == ".."; })) {
                error(n, "'cgroup' must not contain \"..\", got " + inQuotes(*value));
                return;
            }
            s.process.kind = ProcessSelector::Cgroup;
            s.process.value = *value;
        } else {
            if (value->find_first_of("/ \t\r\n") != std::string::npos) {
                error(n, "'unit' is a systemd unit name such as \"nginx.service\", got " + inQuotes(*value) +
                             " (use cgroup for a cgroup path)");
                return;
            }
            s.process.kind = ProcessSelector::Unit;
            s.process.value = *value;
        }
    }

    /// labels, max_label_sets, time, timestamp, timestamp_unit, lateness of a [[source]].
    void parseLabelsAndTime(const toml::table& t, LogSourceConfig& s) {
        if (const toml::node* n = t.get("labels")) {
            if (const auto* table = n->as_table()) {
                for (auto&& [k, v] : *table) {
                    const std::string name(k.str());
                    const bool valid = !name.empty() &&
                                       (std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_') &&
                                       std::all_of(name.begin(), name.end(), [](char c) {
                                           return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
                                       });
                    if (!valid) {
                        report(Level::Error, k.source().begin,
                               "label name " + inQuotes(name) +
                                   " must use letters, digits and '_' and not start with a digit");
                        continue;
                    }
                    if (name.rfind("__", 0) == 0) {
                        report(Level::Error, k.source().begin,
                               "label name " + inQuotes(name) + " must not start with \"__\" (reserved)");
                        continue;
                    }
                    const auto* field = v.as_string();
                    if (field == nullptr) {
                        error(v, "label '" + name + "' must be a dotted field path string like \"http.route\", got " +
                                     typeName(v));
                    } else if (!isValidFieldPath(field->get())) {
                        error(v, "label '" + name + "' must be a dotted field path like \"http.route\", got " +
                                     inQuotes(field->get()));
                    } else {
                        s.labels.push_back(LabelField{name, field->get()});
                    }
                }
                std::sort(s.labels.begin(), s.labels.end(),
                          [](const LabelField& a, const LabelField& b) { return a.name < b.name; });
            } else {
                typeError(*n, "labels", "a table of label = \"field.path\", e.g. { route = \"http.route\" }");
            }
        }
        if (auto n = getInt(t, "max_label_sets", 1, 100000, "between 1 and 100000")) {
            s.max_label_sets = static_cast<std::size_t>(*n);
        }
        if (auto m = getChoice(t, "time", {"arrival", "event"})) {
            s.time = *m == "event" ? TimeMode::Event : TimeMode::Arrival;
        }
        const bool event = s.time == TimeMode::Event;
        if (auto ts = getFieldPath(t, "timestamp", "ts")) {
            s.timestamp = *ts;
        }
        if (auto unit = getUnit(t, "timestamp_unit")) {
            s.timestamp_unit = *unit;
        }
        if (auto d = getDuration(t, "lateness", Bound::AtLeastZero)) {
            s.lateness = *d;
        }
        if (event && t.get("timestamp") == nullptr) {
            error(*t.get("time"), "time = \"event\" needs 'timestamp', the field with each line's time, "
                                  "e.g. timestamp = \"ts\"");
        }
        // With arrival time a `timestamp` is still useful: replay uses it as its clock.
        if (!event) {
            if (const toml::key* k = keyOf(t, "lateness")) {
                report(Level::Error, k->source().begin, "'lateness' is only used with time = \"event\"");
            }
            if (const toml::key* k = keyOf(t, "timestamp_unit"); k != nullptr && t.get("timestamp") == nullptr) {
                report(Level::Error, k->source().begin, "'timestamp_unit' needs 'timestamp'");
            }
        }
    }

    /// A dotted field path in `t[key]`; reported when present but not a valid path.
    std::optional<std::string> getFieldPath(const toml::table& t, std::string_view key, std::string_view example) {
        auto field = getString(t, key);
        if (field && !isValidFieldPath(*field)) {
            error(*t.get(key), "'" + std::string(key) + "' must be a dotted field path like " + inQuotes(example) +
                                   ", got " + inQuotes(*field));
            return std::nullopt;
        }
        return field;
    }

    std::optional<LatencyUnit> getUnit(const toml::table& t, std::string_view key) {
        auto unit = getChoice(t, key, {"ns", "us", "ms", "s"});
        if (!unit) {
            return std::nullopt;
        }
        if (*unit == "ns") {
            return LatencyUnit::Nanoseconds;
        }
        if (*unit == "us") {
            return LatencyUnit::Microseconds;
        }
        return *unit == "ms" ? LatencyUnit::Milliseconds : LatencyUnit::Seconds;
    }

    LatencyField parseLatency(const toml::table& t) {
        checkKeys(t, "in [[source]].latency", kLatencyKeys);
        LatencyField f;
        f.location = locate(t.source().begin);
        const toml::key* field_key = keyOf(t, "field");
        const toml::key* start_key = keyOf(t, "start");
        const toml::key* end_key = keyOf(t, "end");
        if (field_key != nullptr && (start_key != nullptr || end_key != nullptr)) {
            const toml::key* second = start_key != nullptr ? start_key : end_key;
            report(Level::Error, second->source().begin,
                   "'latency' takes either 'field' or 'start' and 'end' (two timestamps), not both");
        } else if (field_key != nullptr) {
            if (auto field = requireString(t, "field", "[[source]].latency")) {
                if (isValidFieldPath(*field)) {
                    f.field = *field;
                } else {
                    error(*t.get("field"), "'field' must be a dotted field path like \"http.duration_ms\", got " +
                                               inQuotes(*field));
                }
            }
            if (auto unit = getUnit(t, "unit")) {
                f.unit = *unit;
            }
            if (const toml::key* k = keyOf(t, "timestamp_unit")) {
                report(Level::Error, k->source().begin,
                       "'timestamp_unit' is only used with 'start' and 'end'; a 'field' takes 'unit'");
            }
        } else if (start_key != nullptr || end_key != nullptr) {
            if (start_key == nullptr || end_key == nullptr) {
                error(t, std::string("missing required key '") + (start_key == nullptr ? "start" : "end") +
                             "' in [[source]].latency ('start' and 'end' go together: latency = end - start)");
            }
            auto start = getFieldPath(t, "start", "request.start");
            auto end = getFieldPath(t, "end", "request.end");
            if (start && end && *start == *end) {
                report(Level::Error, end_key->source().begin,
                       "'start' and 'end' must be two different fields, both are " + inQuotes(*end));
            } else if (start && end) {
                f.start_field = *start;
                f.end_field = *end;
            }
            if (auto unit = getUnit(t, "timestamp_unit")) {
                f.timestamp_unit = *unit;
            }
            if (const toml::key* k = keyOf(t, "unit")) {
                report(Level::Error, k->source().begin,
                       "'unit' is the unit of a 'field'; with 'start' and 'end' the latency is their difference "
                       "(use 'timestamp_unit' for numeric epoch timestamps)");
            }
        } else {
            missing(t, "field", "[[source]].latency (or 'start' and 'end' for the time between two timestamps)");
        }
        // How the store keeps the latencies (HDR histogram in integer units).
        if (auto resolution = getChoice(t, "resolution", {"ns", "us", "ms"})) {
            f.resolution = *resolution == "ns"   ? std::chrono::nanoseconds{1}
                           : *resolution == "us" ? std::chrono::nanoseconds{std::chrono::microseconds{1}}
                                                 : std::chrono::nanoseconds{std::chrono::milliseconds{1}};
        }
        if (auto highest = getDuration(t, "max", Bound::Positive)) {
            f.highest = *highest;
        }
        if (auto sigfigs = getInt(t, "significant_figures", 1, 5, "between 1 and 5")) {
            f.significant_figures = static_cast<int>(*sigfigs);
        }
        if (f.highest < 2 * f.resolution) {
            error(t.get("max") ? *t.get("max") : static_cast<const toml::node&>(t),
                  "'max' must be at least two units of 'resolution'");
        }
        return f;
    }

    /// An error predicate table: `field` and exactly one test, or `any`/`all` of nested
    /// predicate tables. `where` names the table in messages ("[[source]].error.any[1]").
    void parseError(const toml::table& t, ErrorPredicate& p, const std::string& where) {
        checkKeys(t, "in " + where, kErrorKeys);
        p.location = locate(t.source().begin);
        // Exactly one test; the second one written is the one reported.
        std::vector<KeyRef> tests;
        for (std::string_view k : kErrorTests) {
            if (const toml::key* key = keyOf(t, k)) {
                tests.push_back(KeyRef{k, key, t.get(k)});
            }
        }
        static const std::string kOneOf = "exactly one of 'gte', 'ranges', 'in', 'equals', 'present', 'any' or 'all'";
        if (tests.size() > 1) {
            std::sort(tests.begin(), tests.end(), [](const KeyRef& a, const KeyRef& b) {
                const auto& pa = a.key->source().begin;
                const auto& pb = b.key->source().begin;
                return std::pair(pa.line, pa.column) < std::pair(pb.line, pb.column);
            });
            report(Level::Error, tests[1].key->source().begin,
                   "'error' takes " + kOneOf + "; '" + std::string(tests[0].name) + "' is already set");
            return;
        }
        const bool combination = tests.size() == 1 && (tests[0].name == "any" || tests[0].name == "all");
        if (combination) {
            if (const toml::key* k = keyOf(t, "field")) {
                report(Level::Error, k->source().begin,
                       "'field' is not used with '" + std::string(tests[0].name) +
                           "': each predicate in the list names its own field");
            }
        } else if (auto field = requireString(t, "field", where)) {
            if (isValidFieldPath(*field)) {
                p.field = *field;
            } else {
                error(*t.get("field"),
                      "'field' must be a dotted field path like \"http.status\", got " + inQuotes(*field));
            }
        }
        if (tests.empty()) {
            error(t, "'error' needs " + kOneOf + ", e.g. { field = \"status\", gte = 500 }");
            return;
        }
        const std::string_view test = tests[0].name;
        const toml::node& n = *tests[0].node;
        if (test == "gte") {
            if (auto v = numberOf(n, "gte")) {
                p.kind = ErrorPredicate::Kind::NumberAtLeast;
                p.gte = *v;
            }
        } else if (test == "ranges") {
            parseRanges(n, p);
        } else if (test == "in") {
            if (auto values = getStringArray(t, "in")) {
                if (values->empty()) {
                    error(n, "'in' must list at least one value, e.g. [\"error\", \"fatal\"]");
                    return;
                }
                p.kind = ErrorPredicate::Kind::StringIn;
                for (auto& [v, node] : *values) {
                    p.in.push_back(v);
                }
            }
        } else if (test == "equals") {
            if (auto b = getBool(t, "equals")) {
                if (!*b) {
                    error(n, "only 'equals = true' is supported: a line is an error when the field is true");
                    return;
                }
                p.kind = ErrorPredicate::Kind::IsTrue;
            }
        } else if (test == "present") {
            if (auto b = getBool(t, "present")) {
                if (!*b) {
                    error(n, "only 'present = true' is supported: a line is an error when the field is there and "
                             "not null");
                    return;
                }
                p.kind = ErrorPredicate::Kind::Present;
            }
        } else {
            parseCombination(n, test, p, where);
        }
    }

    /// ranges = [[500, 599], [429, 429]]: inclusive [lo, hi] pairs of numbers.
    void parseRanges(const toml::node& n, ErrorPredicate& p) {
        const auto* arr = n.as_array();
        if (arr == nullptr) {
            typeError(n, "ranges", "an array of [lo, hi] pairs, e.g. [[500, 599], [429, 429]]");
            return;
        }
        if (arr->empty()) {
            error(n, "'ranges' must list at least one [lo, hi] pair, e.g. [[500, 599]]");
            return;
        }
        std::vector<std::pair<double, double>> ranges;
        bool ok = true;
        for (const auto& e : *arr) {
            const auto* pair = e.as_array();
            if (pair == nullptr || pair->size() != 2) {
                error(e, std::string("each element of 'ranges' must be an inclusive [lo, hi] pair of numbers, e.g. "
                                     "[500, 599]; got ") +
                             (pair == nullptr ? typeName(e) : "an array of " + std::to_string(pair->size())));
                ok = false;
                continue;
            }
            auto lo = numberOf(*pair->get(0), "ranges");
            auto hi = numberOf(*pair->get(1), "ranges");
            if (!lo || !hi) {
                ok = false;
                continue;
            }
            if (*lo > *hi) {
                error(e, "a range in 'ranges' is [lo, hi] with lo <= hi, got [" + numberText(*lo) + ", " +
                             numberText(*hi) + "]");
                ok = false;
                continue;
            }
            ranges.emplace_back(*lo, *hi);
        }
        if (ok) {
            p.kind = ErrorPredicate::Kind::NumberInRanges;
            p.ranges = std::move(ranges);
        }
    }

    /// any = [ {...}, ... ] / all = [ ... ]: a non-empty array of predicate tables.
    void parseCombination(const toml::node& n, std::string_view test, ErrorPredicate& p, const std::string& where) {
        const std::string key(test);
        const auto* arr = n.as_array();
        if (arr == nullptr) {
            typeError(n, key, "an array of predicate tables, e.g. [{ field = \"status\", gte = 500 }, { field = "
                              "\"timeout\", equals = true }]");
            return;
        }
        if (arr->empty()) {
            error(n, "'" + key + "' must list at least one predicate, e.g. [{ field = \"status\", gte = 500 }]");
            return;
        }
        std::vector<ErrorPredicate> terms;
        bool ok = true;
        for (std::size_t i = 0; i < arr->size(); ++i) {
            const toml::node& e = *arr->get(i);
            const auto* table = e.as_table();
            if (table == nullptr) {
                error(e, "elements of '" + key + "' must be predicate tables like { field = \"status\", gte = 500 }, "
                         "got " + typeName(e));
                ok = false;
                continue;
            }
            ErrorPredicate term;
            const std::size_t errors_before = errorCount();
            parseError(*table, term, where + "." + key + "[" + std::to_string(i) + "]");
            ok = ok && errorCount() == errors_before;
            terms.push_back(std::move(term));
        }
        if (ok) {
            p.kind = key == "any" ? ErrorPredicate::Kind::Any : ErrorPredicate::Kind::All;
            p.terms = std::move(terms);
        }
    }

    std::size_t errorCount() const {
        return static_cast<std::size_t>(
            std::count_if(diags_.begin(), diags_.end(), [](const Diagnostic& d) { return d.level == Level::Error; }));
    }

    void checkHookKeys(const toml::table& t, std::optional<HookType> type) {
        const std::array<std::pair<HookType, const Keys*>, 6> typed{{
            {HookType::EnvFile, &kEnvFileKeys},
            {HookType::Webhook, &kWebhookKeys},
            {HookType::Script, &kScriptKeys},
            {HookType::Alertmanager, &kAlertmanagerKeys},
            {HookType::JsonFile, &kJsonFileKeys},
            {HookType::TomlFile, &kFlagFileKeys},
        }};
        Keys allowed = kHookCommonKeys;
        for (const auto& [ht, keys] : typed) {
            if (!type || *type == ht) {
                allowed.insert(allowed.end(), keys->begin(), keys->end());
            }
        }
        for (auto&& [k, v] : t) {
            if (contains(allowed, k.str())) {
                continue;
            }
            std::string message;
            for (const auto& [secret, instead] : kLiteralSecrets) {
                if (k.str() == secret) {
                    message = "'" + std::string(secret) + "' must not be written in the config (it would end up in "
                              "backups and diffs): use " + std::string(instead);
                }
            }
            if (message.empty()) {
                std::vector<std::string_view> owners;
                for (const auto& [ht, keys] : typed) {
                    if (contains(*keys, k.str())) {
                        owners.push_back(toString(ht));
                    }
                }
                if (!owners.empty()) {
                    std::string list;
                    for (std::size_t i = 0; i < owners.size(); ++i) {
                        list += (i == 0 ? "" : i + 1 == owners.size() ? " and " : ", ") + std::string(owners[i]);
                    }
                    message = "'" + std::string(k.str()) + "' is not valid for a hook of type '" +
                              toString(type.value_or(HookType::Webhook)) + "' (it belongs to " + list + " hooks)";
                }
            }
            if (message.empty()) {
                message = "unknown key '" + std::string(k.str()) + "' in [[hook]]" + didYouMean(k.str(), allowed);
            }
            report(Level::Error, k.source().begin, std::move(message));
        }
    }

    void parseHook(const toml::table& t, Config& config) {
        const std::string_view where = "[[hook]]";
        HookConfig h;
        h.location = locate(t.source().begin);
        auto name = parseName(t, where, hook_names_, "hook");

        std::optional<HookType> type;
        if (t.get("type") == nullptr) {
            missing(t, "type", where);
        } else if (auto s = getChoice(t, "type",
                                      {"env_file", "json_file", "toml_file", "webhook", "script", "alertmanager"})) {
            if (*s == "env_file") {
                type = HookType::EnvFile;
            } else if (*s == "json_file") {
                type = HookType::JsonFile;
            } else if (*s == "toml_file") {
                type = HookType::TomlFile;
            } else if (*s == "webhook") {
                type = HookType::Webhook;
            } else if (*s == "alertmanager") {
                type = HookType::Alertmanager;
            } else {
                type = HookType::Script;
            }
        }
        h.state_dir = config.agent.state_dir;
        h.external_url = config.agent.external_url;
        checkHookKeys(t, type);
        if (auto d = getDuration(t, "timeout", Bound::Positive)) {
            h.timeout = *d;
        }
        if (auto s = getChoice(t, "run_if", {"always", "previous_ok", "previous_failed"})) {
            h.run_if = *s == "previous_ok" ? RunIf::PreviousOk
                       : *s == "previous_failed" ? RunIf::PreviousFailed
                                                 : RunIf::Always;
        }
        if (type) {
            h.type = *type;
            switch (*type) {
                case HookType::EnvFile:
                    parseEnvFileHook(t, h);
                    break;
                case HookType::Webhook:
                    parseWebhookHook(t, h);
                    break;
                case HookType::Script:
                    parseScriptHook(t, h);
                    break;
                case HookType::Alertmanager:
                    parseAlertmanagerHook(t, h);
                    break;
                case HookType::JsonFile:
                case HookType::TomlFile:
                    parseFlagFileHook(t, h);
                    break;
            }
        }
        if (name) {
            h.name = *name;
            config.hooks.push_back(std::move(h));
        }
    }

    void parseEnvFileHook(const toml::table& t, HookConfig& h) {
        if (auto p = requireString(t, "path", "[[hook]] of type env_file")) {
            h.path = resolvePath(*p);
        }
        bool lists_ok = true;
        if (t.get("set") != nullptr) {
            if (auto set = getStringTable(t, "set", "environment variable name", isValidEnvName)) {
                h.set = std::move(*set);
            } else {
                lists_ok = false;
            }
        }
        if (t.get("unset") != nullptr) {
            if (auto unset = getStringArray(t, "unset")) {
                for (auto& [v, node] : *unset) {
                    if (!isValidEnvName(v)) {
                        error(*node, "'" + v + "' in 'unset' is not a valid environment variable name");
                        lists_ok = false;
                        continue;
                    }
                    // An init-capture: clang before 16 cannot capture a structured binding.
                    const bool also_set = std::any_of(h.set.begin(), h.set.end(),
                                                      [&name = v](const auto& kv) { return kv.first == name; });
                    if (also_set) {
                        error(*node, "'" + v + "' is both in 'set' and in 'unset'");
                        lists_ok = false;
                        continue;
                    }
                    h.unset.push_back(v);
                }
            } else {
                lists_ok = false;
            }
        }
        if (lists_ok && h.set.empty() && h.unset.empty()) {
            error(t, "an env_file hook needs at least one key in 'set' or 'unset', e.g. set = { FEATURE_X = \"0\" }");
        }
        if (auto b = getBool(t, "create")) {
            h.create = *b;
        }
        if (auto b = getBool(t, "backup")) {
            h.backup = *b;
        }
        if (auto b = getBool(t, "follow_symlinks")) {
            h.follow_symlinks = *b;
        }
    }

    /// A JSON Pointer key of a json_file / toml_file hook; reported at `where` otherwise.
    bool checkPointer(const std::string& pointer, const toml::source_position& where, std::string_view list) {
        std::string why;
        if (parseJsonPointer(pointer, &why)) {
            return true;
        }
        report(Level::Error, where,
               inQuotes(pointer) + " in '" + std::string(list) + "' is not a JSON Pointer: " + why);
        return false;
    }

    /// A plain value of a flag file (boolean, integer, float, string), reported as `what`
    /// at the value otherwise. JSON: floats must be finite.
    std::optional<FlagValue> flagValue(const toml::node& v, bool json, const std::string& what) {
        if (const auto* b = v.as_boolean()) {
            return FlagValue{b->get()};
        }
        if (const auto* i = v.as_integer()) {
            return FlagValue{i->get()};
        }
        if (const auto* f = v.as_floating_point()) {
            if (json && !std::isfinite(f->get())) {
                error(v, what + " must be finite: JSON has no NaN or infinity");
                return std::nullopt;
            }
            return FlagValue{f->get()};
        }
        if (const auto* str = v.as_string()) {
            return FlagValue{str->get()};
        }
        error(v, what + " must be a boolean, integer, float or string, got " + typeName(v));
        return std::nullopt;
    }

    /// json_file `append`: JSON Pointers of arrays to elements, each a plain value or an
    /// inline table of plain values. Pointers in `set` or `unset` are refused. Returns
    /// false when anything was wrong (each reported at its line:col).
    bool parseFlagAppend(const toml::table& t, HookConfig& h) {
        const toml::node* n = t.get("append");
        if (n == nullptr) {
            return true;
        }
        const auto* table = n->as_table();
        if (table == nullptr) {
            typeError(*n, "append",
                      "a table of JSON Pointers to elements, e.g. { \"/history\" = { event = \"rollback\", at = "
                      "\"{{fired_at}}\" } }");
            return false;
        }
        bool ok = true;
        std::vector<std::pair<toml::source_position, FlagAppend>> entries;
        for (auto&& [k, v] : *table) {
            const std::string pointer(k.str());
            const auto at = k.source().begin;
            if (!checkPointer(pointer, at, "append")) {
                ok = false;
                continue;
            }
            if (pointer.size() >= 2 && pointer.compare(pointer.size() - 2, 2, "/-") == 0) {
                report(Level::Error, at,
                       inQuotes(pointer) + " in 'append' names the array itself, without \"/-\": write " +
                           inQuotes(pointer.substr(0, pointer.size() - 2)));
                ok = false;
                continue;
            }
            const auto in = [&pointer](const auto& list, auto get) {
                return std::any_of(list.begin(), list.end(), [&](const auto& e) { return get(e) == pointer; });
            };
            if (in(h.flag_set, [](const FlagSetting& f) -> const std::string& { return f.pointer; })) {
                report(Level::Error, at, inQuotes(pointer) + " is both in 'set' and in 'append'");
                ok = false;
                continue;
            }
            if (in(h.unset, [](const std::string& u) -> const std::string& { return u; })) {
                report(Level::Error, at, inQuotes(pointer) + " is both in 'unset' and in 'append'");
                ok = false;
                continue;
            }
            FlagAppend entry;
            entry.pointer = pointer;
            if (const auto* fields = v.as_table()) {
                entry.is_object = true;
                std::vector<std::pair<toml::source_position, std::pair<std::string, FlagValue>>> ordered;
                bool fields_ok = true;
                for (auto&& [fk, fv] : *fields) {
                    auto value = flagValue(fv, true,
                                           "the field '" + std::string(fk.str()) + "' of " + inQuotes(pointer) + " in 'append'");
                    if (!value) {
                        fields_ok = false;
                        continue;
                    }
                    ordered.emplace_back(fk.source().begin, std::pair(std::string(fk.str()), std::move(*value)));
                }
                if (!fields_ok) {
                    ok = false;
                    continue;
                }
                std::stable_sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) {
                    return std::pair(a.first.line, a.first.column) < std::pair(b.first.line, b.first.column);
                });
                for (auto& f : ordered) {
                    entry.fields.push_back(std::move(f.second));
                }
            } else if (auto value = flagValue(v, true, "the element of " + inQuotes(pointer) + " in 'append' (a plain value or an inline table of plain values)")) {
                entry.value = std::move(*value);
            } else {
                ok = false;
                continue;
            }
            entries.emplace_back(at, std::move(entry));
        }
        // toml++ keeps tables sorted by key; the config order is the source order.
        std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
            return std::pair(a.first.line, a.first.column) < std::pair(b.first.line, b.first.column);
        });
        for (auto& e : entries) {
            h.flag_append.push_back(std::move(e.second));
        }
        return ok;
    }

    /// json_file and toml_file: `set` maps JSON Pointers to scalars that keep their TOML
    /// type; `unset` lists pointers; json_file's `append` adds elements to arrays.
    void parseFlagFileHook(const toml::table& t, HookConfig& h) {
        const bool json = h.type == HookType::JsonFile;
        const std::string where = std::string("[[hook]] of type ") + toString(h.type);
        if (auto p = requireString(t, "path", where)) {
            h.path = resolvePath(*p);
        }
        bool lists_ok = true;
        if (const toml::node* n = t.get("set")) {
            if (const auto* table = n->as_table()) {
                struct Entry {
                    toml::source_position at;
                    FlagSetting setting;
                };
                std::vector<Entry> entries;
                for (auto&& [k, v] : *table) {
                    const std::string pointer(k.str());
                    if (!checkPointer(pointer, k.source().begin, "set")) {
                        lists_ok = false;
                        continue;
                    }
                    auto value = flagValue(v, json, "the value of " + inQuotes(pointer));
                    if (!value) {
                        lists_ok = false;
                        continue;
                    }
                    entries.push_back(Entry{k.source().begin, FlagSetting{pointer, std::move(*value)}});
                }
                // toml++ keeps tables sorted by key; the config order is the source order.
                std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
                    return std::pair(a.at.line, a.at.column) < std::pair(b.at.line, b.at.column);
                });
                for (auto& e : entries) {
                    h.flag_set.push_back(std::move(e.setting));
                }
            } else {
                typeError(*n, "set", "a table of JSON Pointers to values, e.g. { \"/flags/new_checkout\" = false }");
                lists_ok = false;
            }
        }
        if (t.get("unset") != nullptr) {
            if (auto unset = getStringArray(t, "unset")) {
                for (auto& [v, node] : *unset) {
                    if (!checkPointer(v, node->source().begin, "unset")) {
                        lists_ok = false;
                        continue;
                    }
                    // An init-capture: clang before 16 cannot capture a structured binding.
                    const bool also_set =
                        std::any_of(h.flag_set.begin(), h.flag_set.end(),
                                    [&pointer = v](const FlagSetting& f) { return f.pointer == pointer; });
                    if (also_set) {
                        error(*node, inQuotes(v) + " is both in 'set' and in 'unset'");
                        lists_ok = false;
                        continue;
                    }
                    h.unset.push_back(v);
                }
            } else {
                lists_ok = false;
            }
        }
        if (json && !parseFlagAppend(t, h)) {
            lists_ok = false;
        }
        if (lists_ok && h.flag_set.empty() && h.unset.empty() && h.flag_append.empty()) {
            error(t, std::string("a ") + toString(h.type) + " hook needs at least one pointer in 'set'" +
                         (json ? ", 'unset' or 'append'" : " or 'unset'") +
                         ", e.g. set = { \"/flags/new_checkout\" = false }");
        }
        if (auto b = getBool(t, "create")) {
            h.create = *b;
        }
        if (auto b = getBool(t, "backup")) {
            h.backup = *b;
        }
        if (auto b = getBool(t, "follow_symlinks")) {
            h.follow_symlinks = *b;
        }
    }

    /// `<name>_file` (a path, resolved) or `<name>_env` (a variable name), not both.
    void parseSecretSource(const toml::table& t, std::string_view name, std::string& file, std::string& env,
                           bool has_env = true) {
        const std::string file_key = std::string(name) + "_file";
        const std::string env_key = std::string(name) + "_env";
        if (auto f = getString(t, file_key)) {
            if (f->empty()) {
                error(*t.get(file_key), "'" + file_key + "' must not be empty");
            } else {
                file = resolvePath(*f);
            }
        }
        if (!has_env) {
            return;
        }
        if (auto e = getString(t, env_key)) {
            if (!isValidEnvName(*e)) {
                error(*t.get(env_key), "'" + env_key + "' must be an environment variable name, got " + inQuotes(*e));
            } else if (!file.empty()) {
                error(*t.get(env_key), "set either '" + file_key + "' or '" + env_key + "', not both");
            } else {
                env = *e;
            }
        }
    }

    void parseHttpCommon(const toml::table& t, HookConfig& h, std::string_view where) {
        if (auto url = requireString(t, "url", where)) {
            if (url->rfind("http://", 0) != 0 && url->rfind("https://", 0) != 0) {
                error(*t.get("url"), "'url' must start with http:// or https://, got " + inQuotes(*url));
            } else if (refuseUserinfo(*t.get("url"), "url", *url, "use bearer_token_file or bearer_token_env")) {
                h.url = *url;
            }
        }
        if (auto headers = parseHeaders(t, "bearer_token_file or bearer_token_env")) {
            h.headers = std::move(*headers);
        }
        if (auto n = getInt(t, "retries", 0, kMaxRetries, "between 0 and 20")) {
            h.retries = static_cast<int>(*n);
        }
        if (auto d = getDuration(t, "retry_backoff", Bound::AtLeastZero)) {
            h.retry_backoff = *d;
        }
        parseSecretSource(t, "bearer_token", h.bearer_token_file, h.bearer_token_env);
    }

    void parseAlertmanagerHook(const toml::table& t, HookConfig& h) {
        parseHttpCommon(t, h, "[[hook]] of type alertmanager");
        if (auto d = getDuration(t, "resend_interval", Bound::Positive)) {
            h.resend_interval = *d;
        }
    }

    void parseWebhookHook(const toml::table& t, HookConfig& h) {
        parseHttpCommon(t, h, "[[hook]] of type webhook");
        if (auto f = getChoice(t, "format", {"json", "alertmanager", "slack", "pagerduty"})) {
            if (*f == "alertmanager") {
                h.format = WebhookFormat::Alertmanager;
            } else if (*f == "slack") {
                h.format = WebhookFormat::Slack;
            } else if (*f == "pagerduty") {
                h.format = WebhookFormat::PagerDuty;
            } else {
                h.format = WebhookFormat::Json;
            }
        }
        if (auto b = getString(t, "body_template")) {
            if (b->empty()) {
                error(*t.get("body_template"), "'body_template' must not be empty (leave it out for the format's body)");
            } else {
                h.body_template = *b;
            }
        }
        parseSecretSource(t, "secret", h.secret_file, h.secret_file, false);
        parseSecretSource(t, "routing_key", h.routing_key_file, h.routing_key_env);
        if (h.format == WebhookFormat::PagerDuty && h.body_template.empty() && h.routing_key_file.empty() &&
            h.routing_key_env.empty() && t.get("routing_key_file") == nullptr && t.get("routing_key_env") == nullptr) {
            error(*t.get("format"), "a webhook with format = \"pagerduty\" needs 'routing_key_file' or "
                                    "'routing_key_env' (the Events API v2 integration key)");
        }
        if (auto n = getInt(t, "spool_max_entries", 1, kMaxSpoolEntries, "between 1 and 1000000")) {
            h.spool_max_entries = static_cast<std::size_t>(*n);
        }
        if (auto d = getDuration(t, "spool_max_backoff", Bound::Positive)) {
            h.spool_max_backoff = *d;
        }
    }

    void parseScriptHook(const toml::table& t, HookConfig& h) {
        const toml::node* n = t.get("command");
        if (n == nullptr) {
            missing(t, "command", "[[hook]] of type script");
        } else if (n->is_string()) {
            error(*n,
                  "command is an argv array, e.g. [\"/usr/local/bin/rollback.sh\", \"--now\"]; rollguard never runs a "
                  "shell");
        } else if (auto argv = getStringArray(t, "command")) {
            if (argv->empty() || argv->front().first.empty()) {
                error(*n, "'command' must start with the program to run, e.g. [\"/usr/local/bin/rollback.sh\"]");
            } else {
                for (auto& [arg, node] : *argv) {
                    h.command.push_back(arg);
                }
                // A bare program name is left for PATH lookup; anything with a slash is
                // a path, and relative paths mean relative to the config file.
                if (h.command[0].find('/') != std::string::npos) {
                    h.command[0] = resolvePath(h.command[0]);
                }
            }
        }
        if (auto env = getStringTable(t, "env", "environment variable name", isValidEnvName)) {
            h.env = std::move(*env);
        }
        if (auto names = getStringArray(t, "inherit_env")) {
            for (auto& [v, node] : *names) {
                if (!isValidEnvName(v)) {
                    error(*node, "'" + v + "' in 'inherit_env' is not a valid environment variable name");
                    continue;
                }
                h.inherit_env.push_back(v);
            }
        }
        if (auto w = getString(t, "workdir")) {
            if (w->empty()) {
                error(*t.get("workdir"), "'workdir' must not be empty (leave it out for the agent's working directory)");
            } else {
                h.workdir = resolvePath(*w);
            }
        }
        // Only the type is checked here: the names are resolved when the hook is built,
        // on the host that runs it.
        for (const char* key : {"user", "group"}) {
            if (auto v = getString(t, key)) {
                if (v->empty()) {
                    error(*t.get(key), "'" + std::string(key) + "' must not be empty (leave it out to keep the agent's)");
                } else {
                    (std::string_view(key) == "user" ? h.user : h.group) = *v;
                }
            }
        }
        // A script is not idempotent in general: it is re-run only when asked to.
        h.retries = 0;
        if (auto r = getInt(t, "retries", 0, kMaxRetries, "between 0 and 20")) {
            h.retries = static_cast<int>(*r);
        }
        if (auto d = getDuration(t, "retry_backoff", Bound::AtLeastZero)) {
            h.retry_backoff = *d;
        }
    }

    /// A threshold for `metric`; latency metrics also take a duration string and are
    /// stored in seconds.
    std::optional<double> parseThreshold(const toml::node& n, std::string_view key, const MetricSpec* metric) {
        // With an unknown metric (already reported) either form is accepted, so that one
        // mistake gives one error.
        const bool latency = metric == nullptr || metric->isLatency();
        // A value series may hold durations ("queue_wait_seconds"): "500ms" reads as 0.5.
        const bool value = metric != nullptr && metric->isValue();
        std::optional<double> v;
        if ((latency || value) && n.is_string()) {
            if (auto d = durationOf(n, key)) {
                v = std::chrono::duration<double>(*d).count();
            }
            return v;
        }
        if (latency && !n.is_number()) {
            typeError(n, key, "a duration string like \"500ms\" or a number of seconds");
            return std::nullopt;
        }
        v = numberOf(n, key);
        if (!v) {
            return v;
        }
        if (*v < 0.0) {
            error(n, "'" + std::string(key) + "' must not be negative, got " + numberText(*v));
            return std::nullopt;
        }
        if (metric != nullptr && metric->kind == MetricKind::ErrorRatio && *v > 1.0) {
            error(n, "'" + std::string(key) + "' for error_ratio is a fraction between 0 and 1 (0.05 = 5%), got " +
                         numberText(*v));
            return std::nullopt;
        }
        if (metric != nullptr && metric->isLatency() && *v > kSuspiciousLatencySeconds) {
            report(Level::Warning, n.source().begin,
                   "'" + std::string(key) + "' = " + numberText(*v) + " is in seconds for latency metric '" +
                       metric->text + "' (a plain number means seconds); did you mean \"" + numberText(*v) +
                       "ms\"?");
        }
        return v;
    }

    void parseRule(const toml::table& t, Config& config) {
        const std::string_view where = "[[rule]]";
        checkKeys(t, "in [[rule]]", kRuleKeys);
        RuleSpec r;
        r.location = locate(t.source().begin);
        auto name = parseName(t, where, rule_names_, "rule");

        if (auto sev = getChoice(t, "severity", {"critical", "warning"})) {
            r.severity = *sev == "critical" ? Severity::Critical : Severity::Warning;
        }

        bool source_known = false;  // a json_log source
        const ScrapeStream* stream = nullptr;
        if (auto source = requireString(t, "source", where)) {
            r.source = *source;
            const auto scrape = scrape_series_.find(*source);
            if (source_has_latency_.count(*source) != 0) {
                source_known = true;
            } else if (const auto it = streams_.find(*source); it != streams_.end()) {
                stream = &it->second;
            } else if (scrape != scrape_series_.end()) {
                const auto& [type, series] = scrape->second;
                std::string list;
                for (const auto& s : series) {
                    list += (list.empty() ? "" : ", ") + s;
                }
                error(*t.get("source"), "source '" + *source + "' is a " + type + " source: rules read its series, "
                                        "e.g. '" + *source + "." + (series.empty() ? "NAME" : series.front()) +
                                        "' (series: " + list + ")");
            } else {
                std::vector<std::string_view> names;
                for (const auto& [n, has] : source_has_latency_) {
                    names.push_back(n);
                }
                for (const auto& [n, st] : streams_) {
                    names.push_back(n);
                }
                std::string hint = didYouMean(*source, names);
                if (hint.empty() && !names.empty()) {
                    hint = " (defined sources: " + joinKeys(names) + ")";
                }
                error(*t.get("source"), "unknown source '" + *source + "'" + hint);
            }
        }

        bool metric_ok = false;
        if (auto metric = requireString(t, "metric", where)) {
            const toml::node& mn = *t.get("metric");
            if (*metric == "ratio") {
                metric_ok = parseRatio(t, mn, r.metric);
            } else if (*metric == "quantile") {
                if (const toml::node* qn = t.get("quantile")) {
                    if (auto q = numberOf(*qn, "quantile")) {
                        if (*q > 0.0 && *q < 1.0) {
                            r.metric.kind = MetricKind::Quantile;
                            r.metric.quantile = *q;
                            r.metric.text = quantileText(*q);
                            metric_ok = true;
                        } else {
                            error(*qn, "'quantile' must be between 0 and 1 exclusive (0.995 = p99.5), got " +
                                           numberText(*q));
                        }
                    }
                } else {
                    error(mn, "metric = \"quantile\" needs a 'quantile' key, e.g. quantile = 0.995");
                }
            } else {
                MetricParse parsed = parseMetricName(*metric);
                if (parsed.spec) {
                    r.metric = std::move(*parsed.spec);
                    metric_ok = true;
                } else {
                    error(mn, parsed.error);
                }
                if (const toml::node* qn = t.get("quantile")) {
                    error(*qn, "'quantile' is only used with metric = \"quantile\"");
                }
            }
            if (*metric != "ratio") {
                for (const char* k : {"numerator", "denominator"}) {
                    if (const toml::node* on = t.get(k)) {
                        error(*on, "'" + std::string(k) + "' is only used with metric = \"ratio\"");
                    }
                }
            }
            if (metric_ok && source_known) {
                const std::string why = capabilityError(r.metric, r.source, false, source_has_latency_.at(r.source));
                if (r.metric.needsLatency() && !source_has_latency_.at(r.source)) {
                    error(mn, "metric '" + r.metric.text + "' needs latency, but source '" + r.source +
                                  "' has no 'latency' field (add latency = { field = \"duration_ms\", unit = \"ms\" })");
                } else if (!why.empty()) {
                    error(mn, why);
                }
            }
            if (metric_ok && stream != nullptr) {
                const std::string why = capabilityError(r.metric, r.source, stream->values, stream->has_latency);
                if (!why.empty()) {
                    error(mn, why);
                }
            }
        }

        const toml::node* above = t.get("above");
        const toml::node* below = t.get("below");
        const bool comparing = t.get("compare") != nullptr;
        if (comparing && (above != nullptr || below != nullptr)) {
            error(above != nullptr ? *above : *below,
                  "a rule with 'compare' judges by the test and 'max_increase'; remove 'above'/'below'");
        } else if (comparing) {
            // The comparison decides; no threshold to parse.
        } else if (above != nullptr && below != nullptr) {
            const toml::key* ka = keyOf(t, "above");
            const toml::key* kb = keyOf(t, "below");
            const bool below_later = std::pair(kb->source().begin.line, kb->source().begin.column) >
                                     std::pair(ka->source().begin.line, ka->source().begin.column);
            report(Level::Error, below_later ? kb->source().begin : ka->source().begin,
                   "a rule takes exactly one of 'above' or 'below', not both");
        } else if (above == nullptr && below == nullptr) {
            error(t, "missing threshold in [[rule]]: set exactly one of 'above' or 'below'");
        } else {
            const std::string_view key = above != nullptr ? "above" : "below";
            r.comparison = above != nullptr ? Comparison::Above : Comparison::Below;
            const toml::node& tn = above != nullptr ? *above : *below;
            if (isRelativeThreshold(tn)) {
                parseRelativeThreshold(tn, key, r);
            } else if (auto v = parseThreshold(tn, key, metric_ok ? &r.metric : nullptr)) {
                r.threshold = *v;
            }
        }
        parseRuleSelection(t, r);
        parseBaselineAndCompare(t, r, metric_ok, source_known);

        if (auto d = getDuration(t, "window", Bound::Positive)) {
            if (*d > kMaxWindow) {
                error(*t.get("window"), "'window' " + rules::formatDuration(*d) + " is longer than the store keeps (" +
                                            rules::formatDuration(kMaxWindow) + ")");
            } else if (*d < config.agent.tick) {
                report(Level::Warning, t.get("window")->source().begin,
                       "'window' " + rules::formatDuration(*d) + " is shorter than the tick (" +
                           rules::formatDuration(config.agent.tick) +
                           "): some evaluations will see an empty window");
            }
            r.window = *d;
        }
        if (auto d = getDuration(t, "for", Bound::AtLeastZero)) {
            r.for_ = *d;
        }
        if (auto n = getInt(t, "min_samples", 1, std::numeric_limits<std::int64_t>::max(), "at least 1")) {
            r.min_samples = *n;
        }
        parseRuleTiming(t, r, config);
        r.hooks = hookList(t, "hooks", [&](const std::string& h) {
            const HookConfig* hook = config.findHook(h);
            return hook != nullptr && usesRolloutPercent(*hook)
                       ? "hook '" + h + "' writes {{rollout_percent}}, which only [rollout] events set: a " +
                             "rule's event has no percentage (list the hook in [rollout] hooks instead)"
                       : std::string();
        });
        used_hooks_.insert(r.hooks.begin(), r.hooks.end());
        for (const auto& h : r.hooks) {
            if (const HookConfig* hook = config.findHook(h); hook != nullptr && notifies(hook->type)) {
                r.resolve_hooks.push_back(h);
            }
        }
        if (auto s = getString(t, "description")) {
            r.description = *s;
        }
        if (r.severity == Severity::Critical && r.hooks.empty() && t.get("hooks") == nullptr) {
            report(Level::Warning, t.source().begin,
                   "critical rule" + (name ? " '" + *name + "'" : std::string()) +
                       " has no hooks: it will fire but roll nothing back");
        } else if (r.severity == Severity::Critical && t.get("hooks") != nullptr && t.get("hooks")->is_array() &&
                   t.get("hooks")->as_array()->empty()) {
            report(Level::Warning, t.get("hooks")->source().begin,
                   "critical rule" + (name ? " '" + *name + "'" : std::string()) +
                       " has no hooks: it will fire but roll nothing back");
        }
        if (name) {
            r.name = *name;
            config.rules.push_back(std::move(r));
        }
    }

    /// Why `metric` (or an operand of a ratio) cannot be read from `source`, a value
    /// series (`values`) or an event source with or without latency; "" when it can.
    static std::string capabilityError(const MetricSpec& metric, const std::string& source, bool values,
                                       bool latency) {
        if (metric.kind == MetricKind::Ratio) {
            for (const auto& o : metric.operands) {
                if (auto why = capabilityError(o, source, values, latency); !why.empty()) {
                    return why;
                }
            }
            return {};
        }
        const std::string head = "metric '" + metric.text + "' ";
        if (!values && metric.isValue()) {
            return head + "reads a value series (a gauge, counter or query); '" + source +
                   "' is an event source: use count, rate or error_ratio";
        }
        if (values && (metric.kind == MetricKind::Count || metric.kind == MetricKind::ErrorRatio ||
                       metric.isLatency())) {
            return head + (metric.isLatency() ? "needs latency" : "counts events") + "; '" + source +
                   "' is a value series: use value, increase, growth or rate";
        }
        if (!values && metric.isLatency() && !latency) {
            return head + "needs latency, but '" + source +
                   "' is an event series without latency (histograms and health checks have it)";
        }
        return {};
    }

    // ---- [[rule]] keys added with issue #5 ----

    /// metric = "ratio" with numerator and denominator metric names (no nested ratios).
    bool parseRatio(const toml::table& t, const toml::node& metric_node, MetricSpec& out) {
        out = MetricSpec{};
        out.kind = MetricKind::Ratio;
        bool ok = true;
        std::string text;
        for (const char* k : {"numerator", "denominator"}) {
            const toml::node* n = t.get(k);
            if (n == nullptr) {
                error(metric_node, "metric = \"ratio\" needs 'numerator' and 'denominator', e.g. numerator = "
                                   "\"p99\", denominator = \"p50\"");
                return false;
            }
            const auto* str = n->as_string();
            if (str == nullptr) {
                typeError(*n, k, "a metric name such as \"p99\"");
                ok = false;
                continue;
            }
            if (str->get() == "ratio" || str->get() == "quantile") {
                error(*n, "'" + std::string(k) + "' must be a plain metric (count, error_ratio, p99, ...), not " +
                              inQuotes(str->get()));
                ok = false;
                continue;
            }
            MetricParse parsed = parseMetricName(str->get());
            if (!parsed.spec) {
                error(*n, parsed.error);
                ok = false;
                continue;
            }
            text += text.empty() ? parsed.spec->text : "/" + parsed.spec->text;
            out.operands.push_back(std::move(*parsed.spec));
        }
        out.text = text;
        return ok && out.operands.size() == 2;
    }

    static bool isRelativeThreshold(const toml::node& n) {
        const auto* s = n.as_string();
        return s != nullptr && !s->get().empty() && (s->get().back() == 'x' || s->get().back() == '%');
    }

    /// "2x" (a factor) or "+10%" / "-5%" / "10%" (a change relative to the baseline).
    void parseRelativeThreshold(const toml::node& n, std::string_view key, RuleSpec& r) {
        const std::string text = n.as_string()->get();
        const bool factor = text.back() == 'x';
        std::string_view digits(text.data(), text.size() - 1);
        if (!factor && !digits.empty() && (digits.front() == '+' || digits.front() == '-')) {
            digits.remove_prefix(digits.front() == '+' ? 1 : 0);
        }
        const auto v = parseDecimal(digits);
        if (!v || !std::isfinite(*v) || (factor && *v <= 0.0) || (!factor && *v <= -100.0)) {
            error(n, "'" + std::string(key) + "' = " + inQuotes(text) +
                         " is not a relative threshold (write a factor such as \"2x\" or a change such as "
                         "\"+10%\" or \"-20%\")");
            return;
        }
        r.threshold_kind = factor ? rules::ThresholdKind::Factor : rules::ThresholdKind::Percent;
        r.threshold = factor ? *v : *v / 100.0;
    }

    static bool isLabelName(std::string_view s) {
        if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0])) != 0) {
            return false;
        }
        return std::all_of(s.begin(), s.end(),
                           [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; });
    }

    /// labels = { variant = "canary", route = "=~/api/.*", env = "!=dev" }: a value may
    /// start with an operator (=~, !~, !=, =); without one it is an exact match. A literal
    /// value that starts with '=' or '!' is written with an explicit "=" ("==x").
    std::vector<rules::LabelMatcher> parseMatchers(const toml::table& t, std::string_view key) {
        std::vector<rules::LabelMatcher> out;
        const toml::node* n = t.get(key);
        if (n == nullptr) {
            return out;
        }
        const auto* table = n->as_table();
        if (table == nullptr) {
            typeError(*n, key, "a table of label matchers, e.g. { variant = \"canary\", route = \"=~/api/.*\" }");
            return out;
        }
        for (auto&& [k, v] : *table) {
            const std::string name(k.str());
            if (!isLabelName(name)) {
                report(Level::Error, k.source().begin,
                       "'" + name + "' in '" + std::string(key) + "' is not a valid label name");
                continue;
            }
            const auto* str = v.as_string();
            if (str == nullptr) {
                error(v, "label matcher '" + name + "' must be a string, got " + typeName(v));
                continue;
            }
            std::string_view value = str->get();
            rules::LabelMatcher::Op op = rules::LabelMatcher::Op::Equal;
            static const std::array<std::pair<std::string_view, rules::LabelMatcher::Op>, 4> kOps{{
                {"=~", rules::LabelMatcher::Op::Regex},
                {"!~", rules::LabelMatcher::Op::NotRegex},
                {"!=", rules::LabelMatcher::Op::NotEqual},
                {"=", rules::LabelMatcher::Op::Equal},
            }};
            for (const auto& [prefix, o] : kOps) {
                if (value.substr(0, prefix.size()) == prefix) {
                    op = o;
                    value.remove_prefix(prefix.size());
                    break;
                }
            }
            std::string why;
            auto m = rules::LabelMatcher::make(name, op, std::string(value), why);
            if (m == nullptr) {
                error(v, "label matcher '" + name + "': invalid regular expression " + inQuotes(value) + ": " + why);
                continue;
            }
            out.push_back(std::move(*m));
        }
        return out;
    }

    void parseRuleSelection(const toml::table& t, RuleSpec& r) {
        r.selection.matchers = parseMatchers(t, "labels");
        if (auto groups = getStringArray(t, "group_by")) {
            for (auto& [g, node] : *groups) {
                if (!isLabelName(g)) {
                    error(*node, "'" + g + "' in 'group_by' is not a valid label name");
                } else if (std::find(r.selection.group_by.begin(), r.selection.group_by.end(), g) !=
                           r.selection.group_by.end()) {
                    error(*node, "label '" + g + "' is listed twice in 'group_by'");
                } else {
                    r.selection.group_by.push_back(g);
                }
            }
        }
        if (auto n = getInt(t, "max_groups", 1, kMaxGroupsLimit, "between 1 and 10000")) {
            r.selection.max_groups = static_cast<std::size_t>(*n);
            if (t.get("group_by") == nullptr) {
                report(Level::Warning, t.get("max_groups")->source().begin,
                       "'max_groups' has no effect without 'group_by'");
            }
        }
    }

    void parseBaselineAndCompare(const toml::table& t, RuleSpec& r, bool metric_ok, bool source_known) {
        if (const toml::node* bn = t.get("baseline")) {
            if (const auto* bt = bn->as_table()) {
                checkKeys(*bt, "in [[rule]].baseline", kBaselineKeys);
                const int forms = (bt->get("labels") != nullptr ? 1 : 0) + (bt->get("learn") != nullptr ? 1 : 0) +
                                  (bt->get("file") != nullptr ? 1 : 0);
                if (forms != 1) {
                    error(*bn, "'baseline' takes exactly one of labels (a second selection), learn (a warm-up "
                               "duration) or file (with pointer)");
                } else if (bt->get("labels") != nullptr) {
                    r.baseline.kind = rules::BaselineKind::Selection;
                    r.baseline.selection.matchers = parseMatchers(*bt, "labels");
                } else if (bt->get("learn") != nullptr) {
                    r.baseline.kind = rules::BaselineKind::Learned;
                    if (auto d = getDuration(*bt, "learn", Bound::Positive)) {
                        r.baseline.learn = *d;
                    }
                } else if (auto f = requireString(*bt, "file", "baseline")) {
                    r.baseline.kind = rules::BaselineKind::File;
                    r.baseline.file = resolvePath(*f);
                }
                if (auto ptr = getString(*bt, "pointer")) {
                    if (r.baseline.kind != rules::BaselineKind::File) {
                        error(*bt->get("pointer"), "'pointer' is only used with a baseline 'file'");
                    } else if (!ptr->empty() && ptr->front() != '/') {
                        error(*bt->get("pointer"),
                              "'pointer' is a JSON pointer and starts with '/', e.g. \"/p99\"; got " + inQuotes(*ptr));
                    } else {
                        r.baseline.pointer = *ptr;
                    }
                }
            } else {
                typeError(*bn, "baseline",
                          "a table, e.g. { labels = { variant = \"stable\" } }, { learn = \"10m\" } or "
                          "{ file = \"baseline.json\", pointer = \"/p99\" }");
            }
        }

        const toml::node* cn = t.get("compare");
        if (cn != nullptr) {
            if (auto c = getChoice(t, "compare", {"mann_whitney"})) {
                r.compare.kind = rules::CompareKind::MannWhitney;
                if (r.baseline.kind != rules::BaselineKind::Selection && t.get("baseline") == nullptr) {
                    error(*cn, "compare = \"mann_whitney\" needs a baseline selection, e.g. baseline = { labels = "
                               "{ variant = \"stable\" } }");
                } else if (t.get("baseline") != nullptr && r.baseline.kind != rules::BaselineKind::Selection &&
                           r.baseline.kind != rules::BaselineKind::None) {
                    error(*t.get("baseline"),
                          "compare = \"mann_whitney\" compares two histograms: the baseline must be a selection "
                          "(labels = { ... }), not a learned or file value");
                }
                if (metric_ok && !r.metric.isLatency() && t.get("metric") != nullptr) {
                    error(*t.get("metric"), "compare = \"mann_whitney\" compares latency distributions; use a "
                                            "latency metric such as metric = \"p50\"");
                }
                (void)source_known;
            }
        }
        for (const char* k : {"confidence", "max_increase", "effect"}) {
            if (cn == nullptr && t.get(k) != nullptr) {
                error(*t.get(k), "'" + std::string(k) + "' is only used with compare = \"mann_whitney\"");
            }
        }
        if (cn != nullptr) {
            if (const toml::node* n = t.get("confidence")) {
                if (auto v = numberOf(*n, "confidence")) {
                    if (*v > 0.0 && *v < 1.0) {
                        r.compare.confidence = *v;
                    } else {
                        error(*n, "'confidence' must be between 0 and 1 exclusive (0.98 = 98%), got " +
                                      numberText(*v));
                    }
                }
            }
            if (const toml::node* n = t.get("max_increase")) {
                if (isRelativeThreshold(*n) && n->as_string()->get().back() == '%') {
                    RuleSpec tmp;
                    parseRelativeThreshold(*n, "max_increase", tmp);
                    if (tmp.threshold_kind == rules::ThresholdKind::Percent && tmp.threshold >= 0.0) {
                        r.compare.max_increase = tmp.threshold;
                    } else if (tmp.threshold_kind == rules::ThresholdKind::Percent) {
                        error(*n, "'max_increase' must not be negative");
                    }
                } else if (n->is_number()) {
                    if (auto v = numberOf(*n, "max_increase"); v && *v >= 0.0) {
                        r.compare.max_increase = *v;
                    } else if (v) {
                        error(*n, "'max_increase' must not be negative");
                    }
                } else {
                    typeError(*n, "max_increase", "a percentage such as \"+10%\" or a fraction such as 0.1");
                }
            }
            if (auto e = getChoice(t, "effect", {"median_ratio", "hodges_lehmann"})) {
                r.compare.effect =
                    *e == "median_ratio" ? rules::EffectKind::MedianRatio : rules::EffectKind::HodgesLehmann;
            }
        }

        if (r.isRelative() && r.baseline.kind == rules::BaselineKind::None && t.get("baseline") == nullptr) {
            const toml::node* tn = t.get("above") != nullptr ? t.get("above") : t.get("below");
            error(*tn, "a relative threshold needs a 'baseline': labels = { ... } (a second selection), "
                       "learn = \"10m\" or file = \"...\"");
        }
        if (r.baseline.kind != rules::BaselineKind::None && !r.isRelative() && cn == nullptr &&
            (t.get("above") != nullptr || t.get("below") != nullptr)) {
            error(*t.get("baseline"), "'baseline' is only used with a relative threshold (\"2x\", \"+10%\") or "
                                      "'compare'");
        }
    }

    std::optional<rules::GapPolicy> getPolicy(const toml::table& t, std::string_view key) {
        auto p = getChoice(t, key, {"ok", "breach", "hold"});
        if (!p) {
            return std::nullopt;
        }
        return *p == "ok" ? rules::GapPolicy::Ok : (*p == "breach" ? rules::GapPolicy::Breach : rules::GapPolicy::Hold);
    }

    void parseRuleTiming(const toml::table& t, RuleSpec& r, const Config& config) {
        const toml::node* fn = t.get("for");
        if (const toml::node* bn = t.get("breaches")) {
            const auto* str = bn->as_string();
            int m = 0;
            int n = 0;
            char tail = 0;
            if (str == nullptr) {
                typeError(*bn, "breaches", "a string like \"3 of 5\"");
            } else if (std::sscanf(str->get().c_str(), "%d of %d%c", &m, &n, &tail) != 2 || m < 1 || n < m ||
                       n > kMaxBreachesWindow) {
                error(*bn, "'breaches' must read \"M of N\" with 1 <= M <= N <= 64, e.g. \"3 of 5\"; got " +
                               inQuotes(str->get()));
            } else if (fn != nullptr) {
                error(*bn, "a rule takes 'for' or 'breaches', not both");
            } else {
                r.breaches_m = m;
                r.breaches_n = n;
            }
        }
        if (fn != nullptr && r.for_.count() > 0 && r.for_ < evaluationInterval(config.agent)) {
            report(Level::Warning, fn->source().begin,
                   "'for' = " + rules::formatDuration(r.for_) + " is shorter than the evaluation interval (" +
                       rules::formatDuration(evaluationInterval(config.agent)) +
                       "): it fires at the first evaluation after the breach");
        }
        if (auto d = getDuration(t, "keep_firing_for", Bound::AtLeastZero)) {
            r.keep_firing_for = *d;
        }
        if (auto p = getPolicy(t, "no_data")) {
            r.no_data = *p;
        }
        if (auto p = getPolicy(t, "on_error")) {
            r.on_error = *p;
        }
        if (auto n = getInt(t, "error_budget", 0, 1'000'000, "between 0 and 1000000")) {
            r.error_budget = *n;
        }
        if (auto d = getDuration(t, "delay", Bound::AtLeastZero)) {
            r.delay = *d;
        }
        if (auto d = getDuration(t, "repeat_interval", Bound::Positive)) {
            r.repeat_interval = *d;
            if (r.severity == Severity::Critical) {
                report(Level::Warning, t.get("repeat_interval")->source().begin,
                       "'repeat_interval' is only used by warning rules (a critical rule acts once per incident)");
            }
        }
        if (auto b = getBool(t, "dry_run")) {
            r.dry_run = *b;
        }
    }

    // ---- [rollout] (issue #9) ----------------------------------------------------

    void parseRollout(const toml::table& t, Config& config) {
        checkKeys(t, "in [rollout]", kRolloutKeys);
        RolloutConfig r;
        r.location = locate(t.source().begin);
        bool stages_ok = false;
        if (const toml::node* n = t.get("stages"); n == nullptr) {
            missing(t, "stages", "[rollout]");
        } else if (const auto* arr = n->as_array(); arr == nullptr) {
            typeError(*n, "stages", "an array of percentages, e.g. [5, 25, 50, 100]");
        } else if (arr->empty()) {
            error(*n, "'stages' must list at least one percentage, e.g. [5, 25, 50, 100]");
        } else {
            stages_ok = true;
            for (const auto& e : *arr) {
                const auto* i = e.as_integer();
                if (i == nullptr) {
                    error(e, "elements of 'stages' must be integer percentages (1 to 100), got " +
                                 std::string(typeName(e)));
                    stages_ok = false;
                    continue;
                }
                if (i->get() < 1 || i->get() > 100) {
                    error(e, "stage percentages must be between 1 and 100, got " + std::to_string(i->get()));
                    stages_ok = false;
                    continue;
                }
                const int v = static_cast<int>(i->get());
                if (!r.stages.empty() && v <= r.stages.back()) {
                    error(e, "'stages' must be strictly increasing: " + std::to_string(v) + " after " +
                                 std::to_string(r.stages.back()));
                    stages_ok = false;
                    continue;
                }
                r.stages.push_back(v);
            }
        }

        std::vector<std::chrono::nanoseconds> holds;
        if (const toml::node* n = t.get("hold"); n == nullptr) {
            holds.assign(r.stages.size(), std::chrono::minutes{10});
        } else if (const auto* arr = n->as_array()) {
            bool ok = true;
            for (const auto& e : *arr) {
                if (auto d = durationOf(e, "hold")) {
                    holds.push_back(*d);
                } else {
                    ok = false;
                }
            }
            if (ok && stages_ok && holds.size() != r.stages.size()) {
                error(*n, "'hold' lists " + std::to_string(holds.size()) + " duration" +
                              (holds.size() == 1 ? "" : "s") + " for " + std::to_string(r.stages.size()) +
                              " stage" + (r.stages.size() == 1 ? "" : "s") +
                              ": write one per stage, or a single duration for all");
            }
        } else if (auto d = durationOf(*n, "hold")) {
            holds.assign(r.stages.size(), *d);
        }
        r.hold = std::move(holds);

        std::vector<std::string_view> rule_names;
        for (const auto& [n, loc] : rule_names_) {
            rule_names.push_back(n);
        }
        if (auto gate = getStringArray(t, "gate")) {
            if (gate->empty()) {
                error(*t.get("gate"), "'gate' must name at least one rule (leave it out to gate on every rule)");
            }
            for (auto& [g, node] : *gate) {
                if (rule_names_.count(g) == 0) {
                    std::string hint = didYouMean(g, rule_names);
                    if (hint.empty() && !rule_names.empty()) {
                        hint = " (defined rules: " + joinKeys(rule_names) + ")";
                    }
                    error(*node, "unknown rule '" + g + "' in 'gate'" + hint);
                } else if (std::find(r.gate.begin(), r.gate.end(), g) != r.gate.end()) {
                    error(*node, "rule '" + g + "' is listed twice in 'gate'");
                } else {
                    r.gate.push_back(g);
                }
            }
        }

        if (const toml::node* n = t.get("manual_gate")) {
            if (const auto* b = n->as_boolean()) {
                if (b->get() && r.stages.size() > 1) {
                    r.manual_gate.assign(r.stages.begin() + 1, r.stages.end());
                }
            } else if (const auto* arr = n->as_array()) {
                for (const auto& e : *arr) {
                    const auto* i = e.as_integer();
                    if (i == nullptr) {
                        error(e, "elements of 'manual_gate' must be stage percentages, got " + std::string(typeName(e)));
                    } else if (std::find(r.stages.begin(), r.stages.end(), i->get()) == r.stages.end()) {
                        if (stages_ok) {
                            std::string list;
                            for (int s : r.stages) {
                                list += (list.empty() ? "" : ", ") + std::to_string(s);
                            }
                            error(e, "'manual_gate' lists " + std::to_string(i->get()) +
                                         ", which is not one of the stages (" + list + ")");
                        }
                    } else if (std::find(r.manual_gate.begin(), r.manual_gate.end(), i->get()) != r.manual_gate.end()) {
                        error(e, "stage " + std::to_string(i->get()) + " is listed twice in 'manual_gate'");
                    } else {
                        r.manual_gate.push_back(static_cast<int>(i->get()));
                    }
                }
            } else {
                typeError(*n, "manual_gate", "a boolean or an array of stage percentages, e.g. [50, 100]");
            }
        }

        if (auto c = getChoice(t, "on_critical", {"zero", "previous"})) {
            r.on_critical = *c == "previous" ? RolloutConfig::OnCritical::Previous : RolloutConfig::OnCritical::Zero;
        }
        if (auto d = getDuration(t, "cooldown", Bound::AtLeastZero)) {
            r.cooldown = *d;
        }
        if (auto n = getInt(t, "max_rollbacks", 0, std::numeric_limits<int>::max(), "0 (no limit) or more")) {
            r.max_rollbacks = static_cast<int>(*n);
        }
        r.hooks = rolloutHooks(t, "hooks");
        r.rollback_hooks = rolloutHooks(t, "rollback_hooks");

        // Warnings: a gate without a critical rule never rolls back; hooks that reach nothing.
        bool has_critical = false;
        for (const auto& rule : config.rules) {
            const bool gated = r.gate.empty() || std::find(r.gate.begin(), r.gate.end(), rule.name) != r.gate.end();
            has_critical = has_critical || (gated && rule.severity == Severity::Critical);
        }
        if (!has_critical) {
            const toml::node* gate = t.get("gate");
            report(Level::Warning, gate != nullptr ? locate(gate->source().begin) : r.location,
                   "no critical rule in the rollout's gate: nothing rolls this rollout back");
        }
        const auto* hooks_array = t.get("hooks") == nullptr ? nullptr : t.get("hooks")->as_array();
        if (t.get("hooks") == nullptr || (hooks_array != nullptr && hooks_array->empty())) {
            const toml::node* hooks = t.get("hooks");
            report(Level::Warning, hooks != nullptr ? locate(hooks->source().begin) : r.location,
                   "[rollout] has no hooks: the percentage reaches nothing: add a hook that writes "
                   "{{rollout_percent}}");
        }
        config.rollout = std::move(r);
    }

    /// [rollout] `hooks` / `rollback_hooks`: names of [[hook]]s, no repeats.
    std::vector<std::string> rolloutHooks(const toml::table& t, std::string_view key) {
        auto out = hookList(t, key);
        rollout_hooks_.insert(out.begin(), out.end());
        return out;
    }

    /// `key` of `t`: names of defined [[hook]]s (an unknown one gets a suggestion), each
    /// listed once; `refuse` may reject a hook with a message (empty: accepted). Returns
    /// the accepted names in order.
    std::vector<std::string> hookList(const toml::table& t, std::string_view key,
                                      const std::function<std::string(const std::string&)>& refuse = {}) {
        std::vector<std::string> out;
        auto hooks = getStringArray(t, key);
        if (!hooks) {
            return out;
        }
        std::vector<std::string_view> names;
        for (const auto& [n, loc] : hook_names_) {
            names.push_back(n);
        }
        for (auto& [h, node] : *hooks) {
            if (hook_names_.count(h) == 0) {
                std::string hint = didYouMean(h, names);
                if (hint.empty() && !names.empty()) {
                    hint = " (defined hooks: " + joinKeys(names) + ")";
                }
                error(*node, "unknown hook '" + h + "'" + hint);
            } else if (std::find(out.begin(), out.end(), h) != out.end()) {
                error(*node, "hook '" + h + "' is listed twice in '" + std::string(key) + "'");
            } else if (std::string why = refuse ? refuse(h) : std::string(); !why.empty()) {
                error(*node, why);
            } else {
                out.push_back(h);
            }
        }
        return out;
    }

    void checkWhole(const toml::table& root, const Config& config) {
        for (const auto& s : config.scrapes) {
            for (const auto& stream : scrapeStreams(s)) {
                if (source_names_.count(stream.name) != 0) {
                    report(Level::Error, s.location,
                           "series '" + stream.name + "' of source '" + s.name + "' has the same name as source '" +
                               stream.name + "': rules could not tell them apart; rename one");
                }
            }
        }
        if (root.get("source") == nullptr) {
            report(Level::Error, SourceLocation{file_, 1, 1},
                   "no [[source]] defined: rollguard needs at least one source to read");
        }
        if (root.get("rule") == nullptr) {
            report(Level::Warning, SourceLocation{file_, 1, 1},
                   "no [[rule]] defined: rollguard will only collect metrics");
        }
        for (const auto& h : config.hooks) {
            if (used_hooks_.count(h.name) == 0 && rollout_hooks_.count(h.name) == 0 && hook_names_.count(h.name) != 0) {
                report(Level::Warning, h.location, "hook '" + h.name + "' is not used by any rule");
            }
        }
        const auto* rules = root.get("rule") == nullptr ? nullptr : root.get("rule")->as_array();
        if (rules == nullptr) {
            return;
        }
        for (const auto& e : *rules) {
            if (const auto* t = e.as_table()) {
                checkRuleAgainstSources(*t, config);
            }
        }
    }

    /// A selection naming a label its source does not define would silently read ""
    /// (so `env != "dev"` matches everything): an error. A baseline file that does not
    /// exist yet is only a warning: deploys write it later.
    void checkRuleAgainstSources(const toml::table& t, const Config& config) {
        const auto* baseline = t.get("baseline") == nullptr ? nullptr : t.get("baseline")->as_table();
        if (baseline != nullptr && baseline->get("file") != nullptr && baseline->get("labels") == nullptr &&
            baseline->get("learn") == nullptr) {
            if (const auto f = baseline->get("file")->value<std::string>()) {
                std::error_code ec;
                const std::string path = resolvePath(*f);
                if (!f->empty() && !fs::exists(path, ec)) {
                    report(Level::Warning, baseline->get("file")->source().begin,
                           "baseline file " + inQuotes(path) +
                               " does not exist (yet): the rule has no data until it is written");
                }
            }
        }
        const auto source_name = t.get("source") == nullptr ? std::nullopt : t.get("source")->value<std::string>();
        const LogSourceConfig* source = source_name ? config.findSource(*source_name) : nullptr;
        const auto stream = source_name ? streams_.find(*source_name) : streams_.end();
        if (source == nullptr && stream == streams_.end()) {
            return;  // an unknown source is reported at the rule already
        }
        std::vector<std::string_view> labels;
        if (source != nullptr) {
            for (const auto& l : source->labels) {
                labels.push_back(l.name);
            }
        } else {
            for (const auto& l : stream->second.labels) {
                labels.push_back(l);
            }
        }
        const auto check = [&](const std::string& label, const toml::source_position& where) {
            if (contains(labels, label)) {
                return;
            }
            std::string message = "label '" + label + "' is not defined by source " + inQuotes(*source_name);
            if (labels.empty() && source != nullptr) {
                message += ", which has no labels (add labels = { " + label + " = \"<field>\" } to its [[source]])";
            } else if (labels.empty()) {
                message += ", which has no labels (a series keeps the labels listed in its 'by', e.g. by = [\"" +
                           label + "\"])";
            } else {
                std::string known;
                for (const auto l : labels) {
                    known += (known.empty() ? "" : ", ") + std::string(l);
                }
                message += didYouMean(label, labels) + "; its labels: " + known;
            }
            report(Level::Error, where, std::move(message));
        };
        const auto checkMatchers = [&](const toml::node* n) {
            if (const auto* m = n == nullptr ? nullptr : n->as_table()) {
                for (auto&& [k, v] : *m) {
                    if (isLabelName(k.str())) {
                        check(std::string(k.str()), k.source().begin);
                    }
                }
            }
        };
        checkMatchers(t.get("labels"));
        if (baseline != nullptr) {
            checkMatchers(baseline->get("labels"));
        }
        if (const auto* groups = t.get("group_by") == nullptr ? nullptr : t.get("group_by")->as_array()) {
            for (const auto& g : *groups) {
                if (const auto name = g.value<std::string>(); name && isLabelName(*name)) {
                    check(*name, g.source().begin);
                }
            }
        }
    }

    std::string file_;
    fs::path base_dir_;
    Diagnostics diags_;
    std::map<std::string, SourceLocation> source_names_;
    std::map<std::string, SourceLocation> hook_names_;
    std::map<std::string, SourceLocation> rule_names_;
    std::map<std::string, bool> source_has_latency_;  ///< json_log sources
    /// Every series rules can read from a scrape source, by "<source>.<series>".
    std::map<std::string, ScrapeStream> streams_;
    /// Scrape source name -> its type and its series' short names, for messages.
    std::map<std::string, std::pair<std::string, std::vector<std::string>>> scrape_series_;
    std::set<std::string> used_hooks_;
    std::set<std::string> rollout_hooks_;  ///< hooks listed in [rollout]
};

const Keys kRuleTestTopKeys{"config", "start", "test"};
const Keys kRuleTestKeys{"name", "input", "expect"};
const Keys kRuleTestInputKeys{"source", "from", "to", "rate", "latency", "error_ratio", "labels", "at", "lines"};
const Keys kRuleTestExpectKeys{"at", "firing", "pending", "hooks"};

/// Rule test files (`rollguard test`): the same diagnostics and typed getters as the
/// config loader, and the config they name is loaded by it.
class RuleTestLoader : public Loader {
public:
    using Loader::Loader;

    RuleTestLoad run(std::string_view text) {
        RuleTestLoad result;
        toml::table root;
        try {
            root = toml::parse(text, std::string_view(file_));
        } catch (const toml::parse_error& e) {
            report(Level::Error, e.source().begin, std::string(e.description()));
            result.diagnostics = std::move(diags_);
            return result;
        }
        RuleTestFile file;
        file.path = file_;
        file.start = rules::TimePoint{std::chrono::seconds{1767225600}};  // 2026-01-01T00:00:00Z
        checkKeys(root, "at top level of a rule test file", kRuleTestTopKeys);
        bool config_ok = false;
        if (auto config_path = requireString(root, "config", "a rule test file (the config under test)")) {
            LoadResult loaded = loadConfigFile(resolvePath(*config_path));
            for (auto& d : loaded.diagnostics) {
                diags_.push_back(std::move(d));
            }
            if (loaded.config) {
                file.config = std::move(*loaded.config);
                config_ok = true;
            } else {
                error(*root.get("config"), "the config " + inQuotes(*config_path) + " does not load (see above)");
            }
        }
        if (const toml::node* start = root.get("start")) {
            if (const auto* dt = start->as_date_time(); dt != nullptr && dt->get().offset) {
                file.start = timePointOf(dt->get());
            } else {
                typeError(*start, "start", "an offset date-time like 2026-11-23T10:00:00Z");
            }
        }
        const auto tests = arrayOfTables(root, "test");
        if (tests.empty() && root.get("test") == nullptr) {
            error(root, "a rule test file needs at least one [[test]]");
        }
        if (config_ok) {
            for (const auto* t : tests) {
                file.tests.push_back(parseTest(*t, file.config));
            }
        }
        const bool failed = std::any_of(diags_.begin(), diags_.end(),
                                        [](const Diagnostic& d) { return d.level == Level::Error; });
        if (!failed) {
            result.file = std::move(file);
        }
        result.diagnostics = std::move(diags_);
        return result;
    }

private:
    static rules::TimePoint timePointOf(const toml::date_time& dt) {
        const std::chrono::year_month_day ymd{std::chrono::year{dt.date.year},
                                              std::chrono::month{static_cast<unsigned>(dt.date.month)},
                                              std::chrono::day{static_cast<unsigned>(dt.date.day)}};
        const auto t = std::chrono::sys_days{ymd} + std::chrono::hours{dt.time.hour} +
                       std::chrono::minutes{dt.time.minute} + std::chrono::seconds{dt.time.second} +
                       std::chrono::nanoseconds{dt.time.nanosecond} - std::chrono::minutes{dt.offset->minutes};
        return rules::TimePoint{std::chrono::duration_cast<rules::TimePoint::duration>(t.time_since_epoch())};
    }

    RuleTestCase parseTest(const toml::table& t, const Config& config) {
        RuleTestCase test;
        test.location = locate(t.source().begin);
        checkKeys(t, "in [[test]]", kRuleTestKeys);
        if (auto name = requireString(t, "name", "[[test]]")) {
            test.name = *name;
        }
        for (const auto* in : arrayOfTables(t, "input")) {
            test.inputs.push_back(parseInput(*in, config));
        }
        for (const auto* e : arrayOfTables(t, "expect")) {
            test.expects.push_back(parseExpect(*e, config));
        }
        if (test.expects.empty()) {
            error(t, "test " + inQuotes(test.name) + " has no [[test.expect]]: it could never fail");
        }
        return test;
    }

    RuleTestInput parseInput(const toml::table& t, const Config& config) {
        RuleTestInput in;
        in.location = locate(t.source().begin);
        checkKeys(t, "in [[test.input]]", kRuleTestInputKeys);
        if (auto source = requireString(t, "source", "[[test.input]]")) {
            const auto streams_of = [&](const ScrapeSourceConfig& s) {
                const auto streams = scrapeStreams(s);
                return std::any_of(streams.begin(), streams.end(),
                                   [&](const ScrapeStream& st) { return st.name == *source; });
            };
            if (config.findSource(*source) == nullptr &&
                std::any_of(config.scrapes.begin(), config.scrapes.end(), streams_of)) {
                error(*t.get("source"), "rule tests feed log sources; '" + *source + "' is a scrape series");
            } else if (config.findSource(*source) == nullptr && config.findScrape(*source) != nullptr) {
                error(*t.get("source"), "rule tests feed log sources; '" + *source + "' is a scrape source");
            } else if (config.findSource(*source) == nullptr) {
                std::vector<std::string_view> names;
                for (const auto& s : config.sources) {
                    names.push_back(s.name);
                }
                error(*t.get("source"), "unknown source " + inQuotes(*source) + didYouMean(*source, names));
            }
            in.source = *source;
        }
        if (const auto lines = getStringArray(t, "lines")) {
            for (const auto& [line, node] : *lines) {
                in.lines.push_back(line);
            }
            for (const char* key : {"from", "to", "rate", "latency", "error_ratio", "labels"}) {
                if (const toml::node* n = t.get(key)) {
                    error(*n, "'" + std::string(key) + "' generates events; an input with 'lines' takes only 'at'");
                }
            }
            in.at = getDuration(t, "at", Bound::AtLeastZero).value_or(std::chrono::nanoseconds{0});
            if (in.lines.empty()) {
                error(*t.get("lines"), "'lines' is empty");
            }
            return in;
        }
        if (const toml::node* n = t.get("at")) {
            error(*n, "'at' is for literal 'lines'; generated events take 'from' and 'to'");
        }
        in.from = getDuration(t, "from", Bound::AtLeastZero).value_or(std::chrono::nanoseconds{0});
        if (auto to = getDuration(t, "to", Bound::Positive)) {
            in.to = *to;
            if (in.to <= in.from) {
                error(*t.get("to"), "'to' must be after 'from'");
            }
        } else if (t.get("to") == nullptr) {
            missing(t, "to", "[[test.input]] (or give literal 'lines')");
        }
        if (const toml::node* rate = t.get("rate")) {
            if (auto v = numberOf(*rate, "rate")) {
                if (*v <= 0.0 || *v > 1e6) {
                    error(*rate, "'rate' must be in (0, 1000000] events per second");
                }
                in.rate = *v;
            }
        } else {
            missing(t, "rate", "[[test.input]] (events per second)");
        }
        if (auto labels = getStringTable(t, "labels", "label name", isValidName)) {
            const LogSourceConfig* source = config.findSource(in.source);
            std::vector<std::string_view> known;
            if (source != nullptr) {
                for (const auto& l : source->labels) {
                    known.push_back(l.name);
                }
            }
            for (const auto& [name, value] : *labels) {
                if (source != nullptr && !contains(known, name)) {
                    error(*t.get("labels"), "source " + inQuotes(in.source) + " has no label " + inQuotes(name) +
                                                didYouMean(name, known));
                }
            }
            in.labels = std::move(*labels);
        }
        if (const toml::node* ratio = t.get("error_ratio")) {
            if (auto v = numberOf(*ratio, "error_ratio")) {
                if (*v < 0.0 || *v > 1.0) {
                    error(*ratio, "'error_ratio' must be between 0 and 1");
                }
                in.error_ratio = *v;
            }
        }
        if (const toml::node* latency = t.get("latency")) {
            std::vector<const toml::node*> items;
            if (const auto* arr = latency->as_array()) {
                for (const auto& e : *arr) {
                    items.push_back(&e);
                }
                if (items.empty()) {
                    error(*latency, "'latency' is empty");
                }
            } else {
                items.push_back(latency);
            }
            for (const auto* item : items) {
                if (auto d = durationOf(*item, "latency")) {
                    in.latencies.push_back(std::chrono::duration<double>(*d).count());
                }
            }
        }
        return in;
    }

    RuleTestExpect parseExpect(const toml::table& t, const Config& config) {
        RuleTestExpect e;
        e.location = locate(t.source().begin);
        checkKeys(t, "in [[test.expect]]", kRuleTestExpectKeys);
        if (auto at = getDuration(t, "at", Bound::AtLeastZero)) {
            e.at = *at;
        } else if (t.get("at") == nullptr) {
            missing(t, "at", "[[test.expect]]");
        }
        std::vector<std::string_view> rule_names;
        for (const auto& r : config.rules) {
            rule_names.push_back(r.name);
        }
        std::vector<std::string_view> hook_names;
        for (const auto& h : config.hooks) {
            hook_names.push_back(h.name);
        }
        const auto names = [&](std::string_view key, const std::vector<std::string_view>& known, const char* kind) {
            std::optional<std::vector<std::string>> out;
            if (auto list = getStringArray(t, key)) {
                out.emplace();
                for (const auto& [name, node] : *list) {
                    if (!contains(known, name)) {
                        error(*node, "unknown " + std::string(kind) + " " + inQuotes(name) + didYouMean(name, known));
                    }
                    out->push_back(name);
                }
            }
            return out;
        };
        e.firing = names("firing", rule_names, "rule");
        e.pending = names("pending", rule_names, "rule");
        e.hooks = names("hooks", hook_names, "hook");
        if (!e.firing && !e.pending && !e.hooks && t.get("firing") == nullptr && t.get("pending") == nullptr &&
            t.get("hooks") == nullptr) {
            error(t, "[[test.expect]] needs at least one of 'firing', 'pending' or 'hooks'");
        }
        return e;
    }
};

}  // namespace

LoadResult parseConfig(std::string_view text, const std::string& path) {
    try {
        return Loader(path).run(text);
    } catch (const std::exception& e) {
        // toml++ and the standard library can still throw (e.g. allocation failure);
        // the contract is that loading never throws.
        LoadResult result;
        result.diagnostics.push_back(
            Diagnostic{Level::Error, SourceLocation{path, 0, 0}, std::string("cannot load config: ") + e.what()});
        return result;
    } catch (...) {
        LoadResult result;
        result.diagnostics.push_back(
            Diagnostic{Level::Error, SourceLocation{path, 0, 0}, "cannot load config: unknown error"});
        return result;
    }
}

LoadResult loadConfigFile(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        LoadResult result;
        result.diagnostics.push_back(
            Diagnostic{Level::Error, SourceLocation{path, 0, 0}, "cannot read config: it is a directory"});
        return result;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        LoadResult result;
        result.diagnostics.push_back(Diagnostic{Level::Error, SourceLocation{path, 0, 0},
                                                "cannot read config: " + std::generic_category().message(errno)});
        return result;
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) {
        LoadResult result;
        result.diagnostics.push_back(
            Diagnostic{Level::Error, SourceLocation{path, 0, 0}, "cannot read config: read error"});
        return result;
    }
    return parseConfig(text.str(), path);
}

RuleTestLoad loadRuleTestFile(const std::string& path) {
    RuleTestLoad result;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        result.diagnostics.push_back(Diagnostic{Level::Error, SourceLocation{path, 0, 0},
                                                "cannot read rule test file: " + std::generic_category().message(errno)});
        return result;
    }
    std::ostringstream text;
    text << in.rdbuf();
    try {
        return RuleTestLoader(path).run(text.str());
    } catch (const std::exception& e) {
        result.diagnostics.push_back(
            Diagnostic{Level::Error, SourceLocation{path, 0, 0}, std::string("cannot load rule test file: ") + e.what()});
        return result;
    }
}

}  // namespace rollguard::agent
