#pragma once
// Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text format: a parser
// over a string_view (pure code: no I/O, no clock, no allocation-free promises), plus the
// two pure helpers a scrape source needs on top of it: histogram_quantile over `le`
// buckets and counter increases with reset detection.
//
// Error policy (the same as Prometheus'): a scrape is all or nothing. The first syntax
// or validation error stops the parse; the result then has ok == false, exactly one
// error (line, column, short reason) and no families or samples, because a partial
// scrape would make rates and ratios wrong. Nothing here throws on bad input.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rollguard::agent {

/// Which text format a body is in.
enum class ExpositionFormat { PrometheusText, OpenMetrics };

/// The format to parse a body with, from its HTTP Content-Type: a media type of
/// `application/openmetrics-text` (any parameters, any case, surrounding blanks allowed)
/// is OpenMetrics; anything else, including `text/plain` and an empty or unknown type,
/// is the Prometheus text format (Prometheus' own fallback). Pure; thread-safe.
ExpositionFormat formatFromContentType(std::string_view content_type);

/// The Accept header Prometheus 2.x sends when it scrapes: OpenMetrics 1.0.0 first, then
/// OpenMetrics 0.0.1, then the text format 0.0.4, then anything.
inline constexpr const char* kScrapeAcceptHeader =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A metric family's TYPE. The text format's `untyped` and OpenMetrics' `unknown` are
/// both Unknown, as is a family without a TYPE line.
enum class MetricType { Unknown, Counter, Gauge, Histogram, GaugeHistogram, Summary, Info, StateSet };

/// The OpenMetrics spelling of a type ("counter", ..., "unknown"). Pure; thread-safe.
std::string_view metricTypeName(MetricType type);

/// One label: name and value (value unescaped: `\\`, `\"` and `\n` decoded; any other
/// backslash sequence kept verbatim, as Prometheus does; always valid UTF-8).
struct ExpositionLabel {
    std::string name;
    std::string value;
    friend bool operator==(const ExpositionLabel&, const ExpositionLabel&) = default;
};

/// An OpenMetrics exemplar (`# {trace_id="x"} 1.0 123`): checked for syntax, UTF-8 and
/// the spec's 128-character limit on its label set, then kept. A caller may ignore it.
struct Exemplar {
    std::vector<ExpositionLabel> labels;  ///< sorted by name
    double value = 0.0;
    std::optional<std::int64_t> timestamp_ms;  ///< see Sample::timestamp_ms
};

/// Sample::exemplar when the sample has none.
inline constexpr std::uint32_t kNoExemplar = 0xFFFFFFFFu;

/// One sample line. Kept small (exemplars live out of line) because a big scrape holds
/// hundreds of thousands of them.
struct Sample {
    std::uint32_t family = 0;  ///< index into ParseResult::families
    std::uint32_t line = 0;    ///< 1-based line of the sample in the body
    /// The name as written, with its suffix (`_bucket`, `_sum`, `_count`, `_total`,
    /// `_created`, `_gcount`, `_gsum`, `_info`), e.g. "http_request_duration_seconds_bucket".
    std::string name;
    /// Sorted by name; names unique (a repeated label name is a parse error).
    std::vector<ExpositionLabel> labels;
    /// Go ParseFloat-like: decimal and exponent forms, NaN, +Inf, -Inf, Inf (any case).
    double value = 0.0;
    /// Milliseconds since the Unix epoch. The text format writes integer milliseconds
    /// (kept exactly); OpenMetrics writes float seconds, converted to the nearest
    /// millisecond (sub-millisecond digits are lost, as in Prometheus' storage).
    std::optional<std::int64_t> timestamp_ms;
    /// Index into ParseResult::exemplars, or kNoExemplar; see ParseResult::exemplarOf.
    std::uint32_t exemplar = kNoExemplar;

    /// The value of label `label_name`, or nullptr. O(labels).
    const std::string* label(std::string_view label_name) const;
};

/// A metric family: its metadata and its samples.
struct MetricFamily {
    /// The family name: the TYPE/HELP/UNIT name, or for a sample without metadata its
    /// own name (so an untyped `foo_total` in the text format is family "foo_total").
    std::string name;
    MetricType type = MetricType::Unknown;
    bool has_type = false;
    std::optional<std::string> help;  ///< unescaped (`\\`, `\n`; OpenMetrics also `\"`)
    std::optional<std::string> unit;  ///< OpenMetrics UNIT; a suffix of name
    std::vector<std::uint32_t> samples;  ///< indices into ParseResult::samples, in body order
};

/// Where and why a parse failed.
struct ExpositionError {
    std::uint32_t line = 0;    ///< 1-based
    std::uint32_t column = 0;  ///< 1-based byte offset in the line
    std::string reason;        ///< short, e.g. "duplicate series", "truncated: no # EOF"
    /// "line L:C: reason".
    std::string message() const;
};

/// A label matcher for ParseResult::select: equality or inequality of one label's value
/// (a missing label has the value "", as in PromQL).
struct LabelMatcher {
    enum class Op { Equal, NotEqual };
    std::string name;
    Op op = Op::Equal;
    std::string value;
};

/// Caps that protect the agent from a hostile or broken target. Exceeding any of them
/// fails the whole scrape (like Prometheus' sample_limit and label limits). 0 = no cap.
struct ExpositionLimits {
    std::size_t max_samples = 1'000'000;
    std::size_t max_labels_per_sample = 64;       ///< not counting the metric name
    std::size_t max_label_name_length = 256;      ///< bytes
    std::size_t max_label_value_length = 4096;    ///< bytes, after unescaping
    std::size_t max_line_length = 64 * 1024;     ///< bytes, without the newline
};

/// The outcome of one parse. On failure (ok == false) families and samples are empty
/// and errors holds the first error; on success errors is empty.
/// Thread-safety: none; a const ParseResult may be read from many threads.
struct ParseResult {
    bool ok = false;
    std::vector<MetricFamily> families;  ///< in order of first appearance
    std::vector<Sample> samples;         ///< in body order
    std::vector<Exemplar> exemplars;     ///< referenced by Sample::exemplar
    std::vector<ExpositionError> errors;

    /// The sample's exemplar, or nullptr.
    const Exemplar* exemplarOf(const Sample& sample) const {
        return sample.exemplar < exemplars.size() ? &exemplars[sample.exemplar] : nullptr;
    }

    /// The family named exactly `name`, or nullptr. O(1) average.
    const MetricFamily* family(std::string_view name) const;

    /// The samples whose sample name is `sample_name` (e.g. "http_requests_total" or
    /// "http_request_duration_seconds_bucket") and whose labels satisfy every matcher, in
    /// body order. Finds the family by hash (also through a known suffix), then scans
    /// only that family's samples. The pointers live as long as this result.
    std::vector<const Sample*> select(std::string_view sample_name,
                                      const std::vector<LabelMatcher>& matchers = {}) const;

    struct NameHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    /// family name -> index into families (filled by the parser).
    std::unordered_map<std::string, std::uint32_t, NameHash, std::equal_to<>> family_index;
};

/// Parses one scrape body. Never reads outside `text`, never throws on bad input.
///
/// Prometheus text (0.0.4): lines end with `\n` (the last one may lack it); blank lines
/// and `#` comments other than HELP/TYPE are ignored; blanks (space, tab) separate
/// tokens and may surround labels; a trailing comma in a label set is allowed; the
/// timestamp is integer milliseconds. Histogram and summary samples (`_bucket`, `_sum`,
/// `_count`, quantiles) join the family of the preceding TYPE; other samples without
/// metadata form their own untyped family.
///
/// OpenMetrics (1.0): single spaces, no blank lines, no free comments, TYPE/HELP/UNIT
/// once per family and before its samples, families not interleaved, sample names must
/// fit the family type (counter: `_total`/`_created`; histogram: `_bucket`/`_count`/
/// `_sum`/`_created`; gaugehistogram: `_bucket`/`_gcount`/`_gsum`; summary: bare,
/// `_count`, `_sum`, `_created`; info: `_info`), float-second timestamps, exemplars,
/// and the body must end with `# EOF` (optionally followed by one `\n`); without it the
/// error is "truncated: no # EOF".
///
/// Both: metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`;
/// label values must be valid UTF-8; a series (sample name + label set) may appear
/// once; histogram buckets need a numeric `le` label and summary quantiles a numeric
/// `quantile` label; `limits` apply. Cost: linear in the body; one allocation per
/// sample name, label vector and long label string.
/// Thread-safety: reentrant (no shared state).
ParseResult parseExposition(std::string_view text, ExpositionFormat format, const ExpositionLimits& limits = {});

/// Prometheus' histogram_quantile (classic buckets, as in Prometheus 2.x) over one
/// histogram's buckets given as (upper bound `le`, cumulative count) in any order.
/// q < 0 -> -Inf, q > 1 -> +Inf, q NaN -> NaN; NaN when there are no buckets, no +Inf
/// bucket, fewer than two distinct bounds or zero observations. Buckets with equal
/// bounds are merged (counts added); counts that decrease with `le` are raised to the
/// running maximum (ensureMonotonic). The rank q*count is located by linear
/// interpolation inside its bucket; the lowest bucket interpolates from 0 when its
/// upper bound is positive (else returns that bound); a rank in the +Inf bucket returns
/// the highest finite bound. Units: those of `le`. Pure; thread-safe.
double histogramQuantile(double q, const std::vector<std::pair<double, double>>& buckets);

/// Turns successive raw readings of ONE counter series into increases, the way
/// Prometheus' rate()/increase() see resets: a reading lower than the previous one is a
/// reset, and the increase is then the new reading itself (the counter restarted at
/// 0). A changed OpenMetrics `_created` timestamp is a reset too, even if the value
/// grew. Owns only the previous reading.
/// Thread-safety: none; use one tracker per series from one thread.
class CounterTracker {
public:
    /// Records `value` (a raw counter reading) and returns the increase since the
    /// previous reading (>= 0), or nullopt for the first reading and after clear().
    /// A NaN reading returns nullopt and is not kept (the next reading compares with
    /// the last real one). `created_ms`: the series' `_created` time if known.
    std::optional<double> observe(double value, std::optional<std::int64_t> created_ms = std::nullopt);
    /// Resets seen so far.
    std::uint64_t resets() const { return resets_; }
    /// Forgets the previous reading (e.g. after the series vanished); keeps resets().
    void clear();

private:
    std::optional<double> previous_;
    std::optional<std::int64_t> created_ms_;
    std::uint64_t resets_ = 0;
};

}  // namespace rollguard::agent
