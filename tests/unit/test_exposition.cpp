#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rollguard/agent/exposition.h"

using rollguard::agent::CounterTracker;
using rollguard::agent::Exemplar;
using rollguard::agent::ExpositionFormat;
using rollguard::agent::ExpositionLabel;
using rollguard::agent::ExpositionLimits;
using rollguard::agent::formatFromContentType;
using rollguard::agent::histogramQuantile;
using rollguard::agent::kScrapeAcceptHeader;
using rollguard::agent::LabelMatcher;
using rollguard::agent::MetricFamily;
using rollguard::agent::MetricType;
using rollguard::agent::parseExposition;
using rollguard::agent::ParseResult;
using rollguard::agent::Sample;

namespace {

constexpr auto kText = ExpositionFormat::PrometheusText;
constexpr auto kOm = ExpositionFormat::OpenMetrics;

// The "text format example" of the Prometheus exposition format documentation.
const std::string kPrometheusDocExample = R"(# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.2"} 100392
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# Finally a summary, which has a complex representation, too:
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.05"} 3272
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds{quantile="0.9"} 9001
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
)";

// OpenMetrics 1.0 spec examples, put together in one exposition.
const std::string kOpenMetricsExample = R"(# TYPE acme_http_router_request_seconds summary
# UNIT acme_http_router_request_seconds seconds
# HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.
acme_http_router_request_seconds_sum{path="/api/v1",method="GET"} 9036.32
acme_http_router_request_seconds_count{path="/api/v1",method="GET"} 807283.0
acme_http_router_request_seconds_created{path="/api/v1",method="GET"} 1605281325.0
acme_http_router_request_seconds_sum{path="/api/v2",method="POST"} 479.3
acme_http_router_request_seconds_count{path="/api/v2",method="POST"} 34.0
acme_http_router_request_seconds_created{path="/api/v2",method="POST"} 1605281325.0
# TYPE foo counter
# HELP foo A counter with a \"quoted\" \\ help\nand two lines
foo_total 17.0 1520879607.789 # {trace_id="KOO5S4vxi0o"} 0.67
foo_created 1520430000.123
# TYPE bar histogram
bar_bucket{le="0.01"} 0
bar_bucket{le="0.1"} 8 # {} 0.054
bar_bucket{le="1"} 11 # {trace_id="KOO5S4vxi0o"} 0.67
bar_bucket{le="10"} 17 # {trace_id="oHg5SJYRHA0"} 9.8 1520879607.789
bar_bucket{le="+Inf"} 17
bar_count 17
bar_sum 324789.3
bar_created 1520430000.123
# TYPE gh gaugehistogram
gh_bucket{le="0.01"} 20.0
gh_bucket{le="0.1"} 25.0
gh_bucket{le="1"} 34.0
gh_bucket{le="10"} 34.0
gh_bucket{le="+Inf"} 42.0
gh_gcount 42.0
gh_gsum 3289.3
# TYPE build info
build_info{name="pretty name",version="8.2.7"} 1
# TYPE state stateset
state{entity="controller",state="a"} 1.0
state{entity="controller",state="bb"} 0.0
state{entity="replica",state="a"} 0.0
state{entity="replica",state="bb"} 1.0
# TYPE temp_celsius gauge
# UNIT temp_celsius celsius
temp_celsius{room="b"} -3.5 1520879607
# TYPE mystery unknown
mystery NaN
# EOF
)";

ParseResult parseOk(std::string_view text, ExpositionFormat format, const ExpositionLimits& limits = {}) {
    ParseResult r = parseExposition(text, format, limits);
    INFO((r.errors.empty() ? std::string("no error") : r.errors.front().message()));
    REQUIRE(r.ok);
    REQUIRE(r.errors.empty());
    return r;
}

/// Parses and requires a failure at `line` whose reason contains `reason`.
void requireError(std::string_view text, ExpositionFormat format, std::uint32_t line, const std::string& reason,
                  const ExpositionLimits& limits = {}) {
    const ParseResult r = parseExposition(text, format, limits);
    INFO("input: " << std::string(text));
    REQUIRE_FALSE(r.ok);
    REQUIRE(r.errors.size() == 1);
    INFO("error: " << r.errors.front().message());
    CHECK(r.errors.front().line == line);
    CHECK(r.errors.front().column >= 1);
    CHECK(r.errors.front().reason.find(reason) != std::string::npos);
    CHECK(r.samples.empty());
    CHECK(r.families.empty());
}

const Sample& only(const ParseResult& r, std::string_view name, const std::vector<LabelMatcher>& matchers = {}) {
    const auto found = r.select(name, matchers);
    INFO("select " << std::string(name));
    REQUIRE(found.size() == 1);
    return *found.front();
}

std::vector<ExpositionLabel> labels(std::vector<std::pair<std::string, std::string>> pairs) {
    std::vector<ExpositionLabel> out;
    for (auto& [n, v] : pairs) {
        out.push_back({n, v});
    }
    return out;
}

}  // namespace

TEST_CASE("exposition: the text format example of the Prometheus docs", "[exposition]") {
    const ParseResult r = parseOk(kPrometheusDocExample, kText);
    CHECK(r.samples.size() == 20);
    CHECK(r.families.size() == 6);

    const MetricFamily* requests = r.family("http_requests_total");
    REQUIRE(requests != nullptr);
    CHECK(requests->type == MetricType::Counter);
    CHECK(requests->help == "The total number of HTTP requests.");
    REQUIRE(requests->samples.size() == 2);
    const Sample& post200 = r.samples[requests->samples[0]];
    CHECK(post200.name == "http_requests_total");
    CHECK(post200.labels == labels({{"code", "200"}, {"method", "post"}}));  // sorted by name
    CHECK(post200.value == 1027);
    CHECK(post200.timestamp_ms == 1395066363000);
    CHECK(post200.line == 3);
    CHECK(only(r, "http_requests_total", {{"code", LabelMatcher::Op::Equal, "400"}}).value == 3);

    const Sample& msdos = only(r, "msdos_file_access_time_seconds");
    CHECK(*msdos.label("path") == "C:\\DIR\\FILE.TXT");
    CHECK(*msdos.label("error") == "Cannot find file:\n\"FILE.TXT\"");
    CHECK(msdos.value == 1.458255915e9);
    CHECK_FALSE(msdos.timestamp_ms.has_value());
    CHECK(r.family("msdos_file_access_time_seconds")->type == MetricType::Unknown);
    CHECK_FALSE(r.family("msdos_file_access_time_seconds")->has_type);

    CHECK(only(r, "metric_without_timestamp_and_labels").value == 12.47);
    CHECK(only(r, "metric_without_timestamp_and_labels").labels.empty());

    const Sample& weird = only(r, "something_weird");
    CHECK(std::isinf(weird.value));
    CHECK(weird.value > 0);
    CHECK(weird.timestamp_ms == -3982045);

    const MetricFamily* hist = r.family("http_request_duration_seconds");
    REQUIRE(hist != nullptr);
    CHECK(hist->type == MetricType::Histogram);
    CHECK(hist->help == "A histogram of the request duration.");
    CHECK(hist->samples.size() == 8);
    const auto buckets = r.select("http_request_duration_seconds_bucket");
    REQUIRE(buckets.size() == 6);
    CHECK(*buckets.back()->label("le") == "+Inf");
    CHECK(buckets.back()->value == 144320);
    CHECK(only(r, "http_request_duration_seconds_sum").value == 53423);
    CHECK(only(r, "http_request_duration_seconds_count").family == only(r, "http_request_duration_seconds_sum").family);
    CHECK(r.family("http_request_duration_seconds_sum") == nullptr);

    const MetricFamily* summary = r.family("rpc_duration_seconds");
    REQUIRE(summary != nullptr);
    CHECK(summary->type == MetricType::Summary);
    CHECK(summary->samples.size() == 7);
    CHECK(only(r, "rpc_duration_seconds", {{"quantile", LabelMatcher::Op::Equal, "0.99"}}).value == 76656);
    CHECK(only(r, "rpc_duration_seconds_sum").value == 1.7560473e+07);
    CHECK(only(r, "rpc_duration_seconds_count").value == 2693);
}

TEST_CASE("exposition: text format blanks, comments, HELP escaping and a last line without newline",
          "[exposition]") {
    const std::string text =
        "  # a comment line\n"
        "#HELP tight Help\\\\with \\n escapes and \\t kept\n"
        "# TYPE tight gauge\n"
        "\t tight { b = \"2\" ,\ta=\"1\", } \t 42 \t 1700000000000 \t\n"
        "\n"
        "   \n"
        "#\n"
        "# TYPE untyped_one untyped\n"
        "untyped_one{} -0.5e-3\n"
        "odd{v=\"back\\\\slash \\x kept\"} 1\n"
        "last_line 7";
    const ParseResult r = parseOk(text, kText);
    const Sample& tight = only(r, "tight");
    CHECK(tight.labels == labels({{"a", "1"}, {"b", "2"}}));
    CHECK(tight.value == 42);
    CHECK(tight.timestamp_ms == 1700000000000);
    CHECK(r.family("tight")->help == "Help\\with \n escapes and \\t kept");
    CHECK(r.family("untyped_one")->type == MetricType::Unknown);
    CHECK(r.family("untyped_one")->has_type);
    CHECK(only(r, "untyped_one").value == -0.0005);
    CHECK(*only(r, "odd").label("v") == "back\\slash \\x kept");
    CHECK(only(r, "last_line").value == 7);
    CHECK(only(r, "last_line").line == 11);
}

TEST_CASE("exposition: NaN and infinities in values and le labels", "[exposition]") {
    for (const auto format : {kText, kOm}) {
        std::string text =
            "# TYPE h histogram\n"
            "h_bucket{le=\"-Inf\"} 0\n"
            "h_bucket{le=\"+Inf\"} 3\n"
            "h_count 3\n"
            "a NaN\n"
            "b +Inf\n"
            "c -Inf\n"
            "d inf\n"
            "e 1e308\n";
        if (format == kOm) {
            text += "# EOF\n";
        }
        const ParseResult r = parseOk(text, format);
        CHECK(std::isnan(only(r, "a").value));
        CHECK(only(r, "b").value == std::numeric_limits<double>::infinity());
        CHECK(only(r, "c").value == -std::numeric_limits<double>::infinity());
        CHECK(only(r, "d").value == std::numeric_limits<double>::infinity());
        CHECK(only(r, "e").value == 1e308);
    }
}

TEST_CASE("exposition: OpenMetrics spec examples with _total, _created, exemplars, UNIT, info, stateset",
          "[exposition]") {
    const ParseResult r = parseOk(kOpenMetricsExample, kOm);

    const MetricFamily* acme = r.family("acme_http_router_request_seconds");
    REQUIRE(acme != nullptr);
    CHECK(acme->type == MetricType::Summary);
    CHECK(acme->unit == "seconds");
    CHECK(acme->help == "Latency though all of ACME's HTTP request router.");
    CHECK(acme->samples.size() == 6);
    CHECK(only(r, "acme_http_router_request_seconds_count", {{"path", LabelMatcher::Op::Equal, "/api/v1"}}).value ==
          807283.0);
    CHECK(only(r, "acme_http_router_request_seconds_created", {{"method", LabelMatcher::Op::NotEqual, "GET"}}).value ==
          1605281325.0);

    const MetricFamily* foo = r.family("foo");
    REQUIRE(foo != nullptr);
    CHECK(foo->type == MetricType::Counter);
    CHECK(foo->help == "A counter with a \"quoted\" \\ help\nand two lines");
    const Sample& total = only(r, "foo_total");
    CHECK(total.value == 17.0);
    CHECK(total.timestamp_ms == 1520879607789);
    const Exemplar* ex = r.exemplarOf(total);
    REQUIRE(ex != nullptr);
    CHECK(ex->labels == labels({{"trace_id", "KOO5S4vxi0o"}}));
    CHECK(ex->value == 0.67);
    CHECK_FALSE(ex->timestamp_ms.has_value());
    CHECK(r.exemplars.size() == 4);
    CHECK(only(r, "foo_created").value == 1520430000.123);
    CHECK(only(r, "foo_created").family == total.family);

    const MetricFamily* bar = r.family("bar");
    REQUIRE(bar != nullptr);
    CHECK(bar->type == MetricType::Histogram);
    CHECK(bar->samples.size() == 8);
    const Exemplar* b01 = r.exemplarOf(only(r, "bar_bucket", {{"le", LabelMatcher::Op::Equal, "0.1"}}));
    REQUIRE(b01 != nullptr);
    CHECK(b01->labels.empty());
    CHECK(b01->value == 0.054);
    const Exemplar* b10 = r.exemplarOf(only(r, "bar_bucket", {{"le", LabelMatcher::Op::Equal, "10"}}));
    REQUIRE(b10 != nullptr);
    CHECK(b10->timestamp_ms == 1520879607789);
    CHECK(r.exemplarOf(only(r, "bar_bucket", {{"le", LabelMatcher::Op::Equal, "+Inf"}})) == nullptr);

    CHECK(r.family("gh")->type == MetricType::GaugeHistogram);
    CHECK(only(r, "gh_gcount").value == 42.0);
    CHECK(only(r, "gh_gsum").value == 3289.3);

    CHECK(r.family("build")->type == MetricType::Info);
    CHECK(*only(r, "build_info").label("version") == "8.2.7");

    CHECK(r.family("state")->type == MetricType::StateSet);
    CHECK(r.select("state").size() == 4);
    CHECK(only(r, "state", {{"entity", LabelMatcher::Op::Equal, "replica"}, {"state", LabelMatcher::Op::Equal, "bb"}})
              .value == 1.0);

    CHECK(only(r, "temp_celsius").value == -3.5);
    CHECK(only(r, "temp_celsius").timestamp_ms == 1520879607000);
    CHECK(r.family("temp_celsius")->unit == "celsius");
    CHECK(r.family("mystery")->type == MetricType::Unknown);
    CHECK(std::isnan(only(r, "mystery").value));

    // The same body without its final newline is still complete.
    const std::string no_newline = kOpenMetricsExample.substr(0, kOpenMetricsExample.size() - 1);
    CHECK(parseOk(no_newline, kOm).samples.size() == r.samples.size());
}

TEST_CASE("exposition: select by sample name and label matchers", "[exposition]") {
    const ParseResult r = parseOk(kPrometheusDocExample, kText);
    CHECK(r.select("http_requests_total").size() == 2);
    CHECK(r.select("http_requests_total", {{"method", LabelMatcher::Op::Equal, "post"}}).size() == 2);
    CHECK(r.select("http_requests_total", {{"code", LabelMatcher::Op::NotEqual, "200"}}).size() == 1);
    // A missing label matches "" as in PromQL.
    CHECK(r.select("http_requests_total", {{"missing", LabelMatcher::Op::Equal, ""}}).size() == 2);
    CHECK(r.select("http_requests_total", {{"missing", LabelMatcher::Op::NotEqual, ""}}).empty());
    CHECK(r.select("http_request_duration_seconds_bucket", {{"le", LabelMatcher::Op::NotEqual, "+Inf"}}).size() == 5);
    CHECK(r.select("http_request_duration_seconds").empty());  // the family has no bare sample
    CHECK(r.select("nope_total").empty());
    CHECK(r.family("nope") == nullptr);
}

TEST_CASE("exposition: content type to format and the Prometheus Accept header", "[exposition]") {
    CHECK(formatFromContentType("application/openmetrics-text; version=1.0.0; charset=utf-8") == kOm);
    CHECK(formatFromContentType("application/openmetrics-text;version=0.0.1") == kOm);
    CHECK(formatFromContentType(" Application/OpenMetrics-Text ") == kOm);
    CHECK(formatFromContentType("text/plain; version=0.0.4; charset=utf-8") == kText);
    CHECK(formatFromContentType("") == kText);
    CHECK(formatFromContentType("application/json") == kText);
    CHECK(formatFromContentType("application/openmetrics-textual") == kText);
    CHECK(std::string(kScrapeAcceptHeader) ==
          "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
          "text/plain;version=0.0.4;q=0.5,*/*;q=0.1");
}

TEST_CASE("exposition: a scrape with an error is rejected whole with its line and reason", "[exposition]") {
    SECTION("OpenMetrics without # EOF is truncated") {
        requireError("# TYPE a gauge\na 1\n", kOm, 3, "truncated: no # EOF");
        requireError("", kOm, 1, "truncated: no # EOF");
        requireError("a 1\n# EO", kOm, 2, "invalid comment");
    }
    SECTION("OpenMetrics structure") {
        requireError("a 1\n# EOF\nb 2\n", kOm, 3, "content after # EOF");
        requireError("a 1\n# EOF\n\n", kOm, 3, "content after # EOF");
        requireError("a 1\n\nb 2\n# EOF\n", kOm, 2, "empty line");
        requireError("# just a comment\na 1\n# EOF\n", kOm, 1, "invalid comment");
        requireError("# TYPE a counter\na 1\n# EOF\n", kOm, 2, "does not fit the counter family 'a'");
        requireError("# TYPE a counter\na_total 1\nb 1\na_created 1\n# EOF\n", kOm, 4, "interleaved");
        requireError("# TYPE a gauge\n# TYPE b gauge\n# HELP a x\n# EOF\n", kOm, 3, "not grouped");
        requireError("a{x=\"1\",} 1\n# EOF\n", kOm, 1, "invalid label name");
        requireError("a  1\n# EOF\n", kOm, 1, "missing value");
        requireError("# TYPE a untyped\n# EOF\n", kOm, 1, "unknown metric type 'untyped'");
        requireError("# TYPE a_bytes gauge\n# UNIT a_bytes seconds\n# EOF\n", kOm, 2, "not a suffix");
        requireError("a_total 1 # {x=\"1\"} 1 bad\n# EOF\n", kOm, 1, "invalid exemplar timestamp");
        requireError("a_total 1 #{x=\"1\"} 1\n# EOF\n", kOm, 1, "expected a space after '#'");
        requireError("a_total 1 # {a=\"" + std::string(200, 'x') + "\"} 1\n# EOF\n", kOm, 1,
                     "exemplar labels longer than 128 characters");
        requireError("a 1 1e400\n# EOF\n", kOm, 1, "invalid timestamp");
        requireError("a 1 \n# EOF\n", kOm, 1, "invalid timestamp");
    }
    SECTION("duplicate series") {
        requireError("a{x=\"1\",y=\"2\"} 1\nb 1\na{y=\"2\",x=\"1\"} 2\n", kText, 3, "duplicate series (first on line 1)");
        requireError("a 1\na 2 1000\n", kText, 2, "duplicate series");
        requireError("# TYPE c counter\nc_total{x=\"1\"} 1\nc_total{x=\"1\"} 2\n# EOF\n", kOm, 3, "duplicate series");
        // The first error wins, whether it is the duplicate or a later syntax error.
        requireError("a 1\nb 1\na 2\nc{ 1\n", kText, 3, "duplicate series");
        requireError("a 1\nc{ 1\na 2\n", kText, 2, "invalid label name");
        requireError("a 1\nb 1\nb 2\na 3\n", kText, 3, "duplicate series (first on line 2)");
        // Same labels, other sample names: not duplicates.
        parseOk("# TYPE c counter\nc_total{x=\"1\"} 1\nc_created{x=\"1\"} 2\n# EOF\n", kOm);
    }
    SECTION("non-UTF-8 label values") {
        requireError("a{x=\"\xff\"} 1\n", kText, 1, "not valid UTF-8");
        requireError("a{x=\"ok\"} 1\nb{x=\"\xc0\xaf\"} 1\n", kText, 2, "not valid UTF-8");        // overlong '/'
        requireError("a{x=\"\xed\xa0\x80\"} 1\n", kText, 1, "not valid UTF-8");                  // surrogate
        requireError("a{x=\"\xf4\x90\x80\x80\"} 1\n# EOF\n", kOm, 1, "not valid UTF-8");         // > U+10FFFF
        requireError("a{x=\"abc\xe2\x82\"} 1\n", kText, 1, "not valid UTF-8");                   // cut sequence
        requireError("a_total 1 # {x=\"\xff\"} 1\n# EOF\n", kOm, 1, "not valid UTF-8");
        requireError("# HELP a bad \xff help\n", kText, 1, "HELP is not valid UTF-8");
        CHECK(*only(parseOk("a{x=\"gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80\"} 1\n", kText), "a").label("x") ==
              "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80");
    }
    SECTION("limits") {
        ExpositionLimits l;
        l.max_samples = 2;
        requireError("a 1\nb 1\nc 1\n", kText, 3, "more than 2 samples", l);
        parseOk("a 1\nb 1\n", kText, l);
        l = {};
        l.max_labels_per_sample = 2;
        requireError("a{x=\"1\",y=\"2\",z=\"3\"} 1\n", kText, 1, "more than 2 labels", l);
        l = {};
        l.max_label_name_length = 3;
        requireError("a{long=\"1\"} 1\n", kText, 1, "label name longer than 3 bytes", l);
        l = {};
        l.max_label_value_length = 3;
        requireError("a{x=\"1234\"} 1\n", kText, 1, "label value longer than 3 bytes", l);
        parseOk("a{x=\"\\\\\\\\\\\\\"} 1\n", kText, l);  // 6 bytes escaped, 3 unescaped
        l = {};
        l.max_line_length = 10;
        requireError("a 1\nabcdefghij 1\n", kText, 2, "line longer than 10 bytes", l);
        const ParseResult r = parseExposition("a 1\nabcdefghij 1\n", kText, l);
        CHECK(r.errors.front().column == 11);
    }
    SECTION("syntax") {
        requireError("1a 1\n", kText, 1, "invalid metric name");
        requireError("a-b 1\n", kText, 1, "invalid character in metric name");
        requireError("a\n", kText, 1, "missing value");
        requireError("a{x=\"1\"}\n", kText, 1, "missing value");
        requireError("a{x=\"1\"}1\n", kText, 1, "expected a blank before the value");
        requireError("a abc\n", kText, 1, "invalid value 'abc'");
        requireError("a 1 12.5\n", kText, 1, "invalid timestamp");
        requireError("a 1 1 1\n", kText, 1, "unexpected text after the timestamp");
        requireError("a_total 1 # {x=\"1\"} 1\n", kText, 1, "invalid timestamp");  // no exemplars in 0.0.4
        requireError("a{x=\"1\n", kText, 1, "unterminated label value");
        requireError("a{x=\"1\\\"} 1\n", kText, 1, "unterminated label value");
        requireError("a{x=\"1\" 1\n", kText, 1, "expected ',' or '}'");
        requireError("a{x=\"1\"\n", kText, 1, "unterminated label set");
        requireError("a{x 1\n", kText, 1, "expected '='");
        requireError("a{x=1} 1\n", kText, 1, "expected '\"'");
        requireError("a{1x=\"1\"} 1\n", kText, 1, "invalid label name");
        requireError("a{x=\"1\",x=\"2\"} 1\n", kText, 1, "duplicate label name 'x'");
        requireError("a NaN(1)\n", kText, 1, "invalid value");
        requireError("a --1\n", kText, 1, "invalid value");
    }
    SECTION("metadata") {
        requireError("# TYPE a blah\n", kText, 1, "unknown metric type 'blah'");
        requireError("# TYPE a gaugehistogram\n", kText, 1, "unknown metric type");
        requireError("# TYPE a gauge\n# TYPE a gauge\n", kText, 2, "duplicate TYPE for 'a'");
        requireError("# HELP a x\n# HELP a y\n", kText, 2, "duplicate HELP");
        requireError("a 1\n# TYPE a gauge\n", kText, 2, "TYPE for 'a' after its samples");
        requireError("# TYPE a gauge extra\n", kText, 1, "unexpected text after the type");
        requireError("# TYPE\n", kText, 1, "invalid metric name in TYPE");
        requireError("# HELP a{x} y\n", kText, 1, "invalid metric name in HELP");
        requireError("# TYPE h histogram\nh_bucket 1\n", kText, 2, "has no 'le' label");
        requireError("# TYPE h histogram\nh_bucket{le=\"x\"} 1\n", kText, 2, "non-numeric 'le'");
        requireError("# TYPE s summary\ns 1\n", kText, 2, "has no 'quantile' label");
        requireError("# TYPE h histogram\nh 1\n", kText, 2, "does not fit the histogram family 'h'");
    }
}

TEST_CASE("exposition: every prefix of a good exposition parses without reading out of bounds", "[exposition]") {
    // Under ASan (ROLLGUARD_SANITIZE) any read past a prefix would abort.
    for (const auto format : {kText, kOm}) {
        const std::string& full = format == kText ? kPrometheusDocExample : kOpenMetricsExample;
        const std::size_t full_samples = parseOk(full, format).samples.size();
        for (std::size_t n = 0; n <= full.size(); ++n) {
            // A copy of exactly n bytes, so a read past the prefix leaves the allocation.
            const std::string prefix = full.substr(0, n);
            const ParseResult r = parseExposition(prefix, format);
            if (format == kOm) {
                // Only the whole body (with or without its last newline) has its # EOF.
                CHECK(r.ok == (n >= full.size() - 1));
            }
            if (r.ok) {
                CHECK(r.samples.size() <= full_samples);
            } else {
                CHECK(r.errors.size() == 1);
                CHECK(r.samples.empty());
            }
        }
    }
}

TEST_CASE("exposition: single-byte corruptions never crash", "[exposition]") {
    const char kBytes[] = {'"', '\\', '{', '}', ',', '=', ' ', '\t', '\n', '#', '\0', '\xff', '\xc3', 'e', '+'};
    for (const auto format : {kText, kOm}) {
        const std::string& full = format == kText ? kPrometheusDocExample : kOpenMetricsExample;
        std::size_t failures = 0;
        for (std::size_t i = 0; i < full.size(); ++i) {
            for (const char b : kBytes) {
                std::string mutated = full;
                mutated[i] = b;
                const ParseResult r = parseExposition(mutated, format);
                if (!r.ok) {
                    ++failures;
                    REQUIRE(r.errors.size() == 1);
                    REQUIRE(r.errors.front().line >= 1);
                }
            }
        }
        CHECK(failures > 0);
    }
}

TEST_CASE("exposition: histogramQuantile follows Prometheus' histogram tests", "[exposition]") {
    // promql testdata histograms.test at 50m: counts are 10x the per-5m increments.
    const std::vector<std::pair<double, double>> positive = {{0.1, 50}, {0.2, 70}, {1, 110}, {INFINITY, 120}};
    const std::vector<std::pair<double, double>> negative = {{-0.2, 10}, {-0.1, 20}, {0.3, 20}, {INFINITY, 30}};
    CHECK(histogramQuantile(-0.1, positive) == -INFINITY);
    CHECK(histogramQuantile(1.01, negative) == INFINITY);
    CHECK(histogramQuantile(0, positive) == 0);
    CHECK(histogramQuantile(0, negative) == -0.2);
    CHECK(histogramQuantile(1, positive) == 1);
    CHECK(histogramQuantile(1, negative) == 0.3);
    CHECK(histogramQuantile(0.2, positive) == Approx(0.048));
    CHECK(histogramQuantile(0.2, negative) == Approx(-0.2));
    CHECK(histogramQuantile(0.5, positive) == Approx(0.15));
    CHECK(histogramQuantile(0.5, negative) == Approx(-0.15));
    CHECK(histogramQuantile(0.8, positive) == Approx(0.72));
    CHECK(histogramQuantile(0.8, negative) == Approx(0.3));

    // Aggregated request_duration_seconds (sum by le): 0.1 -> 10, 0.2 -> 19, +Inf -> 25 per 5m.
    const std::vector<std::pair<double, double>> summed = {{0.1, 10}, {0.2, 19}, {INFINITY, 25}};
    CHECK(histogramQuantile(0.3, summed) == Approx(0.075));
    CHECK(histogramQuantile(0.5, summed) == Approx(0.1277777777777778));
    // By job: job1 = {3, 8, 10}, job2 = {7, 11, 15}.
    CHECK(histogramQuantile(0.5, {{0.1, 3}, {0.2, 8}, {INFINITY, 10}}) == Approx(0.14));
    CHECK(histogramQuantile(0.3, {{0.1, 7}, {0.2, 11}, {INFINITY, 15}}) == Approx(0.0642857142857143));

    // Non-monotonic bucket counts: the answer must be ~1, not ~1000.
    const std::vector<std::pair<double, double>> nonmonotonic = {{0.1, 10},  {1, 90},    {10, 80},
                                                                 {100, 80}, {1000, 90}, {INFINITY, 90}};
    CHECK(histogramQuantile(0.99, nonmonotonic) == Approx(0.989875));

    // The same bound written differently is merged (counts added), in any order.
    const std::vector<std::pair<double, double>> mixed = {{INFINITY, 40}, {0.2, 10}, {0.1, 10}, {0.2, 10}, {0.2, 10}};
    CHECK(histogramQuantile(0.5, mixed) == Approx(0.15));
    CHECK(histogramQuantile(0.75, mixed) == Approx(0.2));
    CHECK(histogramQuantile(1, mixed) == Approx(0.2));
    CHECK(std::isnan(histogramQuantile(0.5, {{INFINITY, 0}, {INFINITY, 0}})));
}

TEST_CASE("exposition: histogramQuantile edge cases", "[exposition]") {
    CHECK(std::isnan(histogramQuantile(0.5, {})));
    CHECK(std::isnan(histogramQuantile(NAN, {{1, 1}, {INFINITY, 2}})));
    CHECK(std::isnan(histogramQuantile(0.5, {{1, 1}, {2, 2}})));           // no +Inf bucket
    CHECK(std::isnan(histogramQuantile(0.5, {{INFINITY, 5}})));            // only +Inf
    CHECK(std::isnan(histogramQuantile(0.5, {{1, 0}, {INFINITY, 0}})));    // no observations
    CHECK(histogramQuantile(0.99, {{1, 0}, {2, 0}, {INFINITY, 10}}) == 2);  // rank in +Inf: highest finite bound
    CHECK(histogramQuantile(0.5, {{10, 4}, {INFINITY, 4}}) == Approx(5));  // lowest bucket from 0
    CHECK(histogramQuantile(0.5, {{0, 4}, {INFINITY, 4}}) == 0);            // lowest bound <= 0: the bound
}

TEST_CASE("exposition: CounterTracker turns readings into increases with reset detection", "[exposition]") {
    CounterTracker t;
    CHECK_FALSE(t.observe(100).has_value());  // first reading: no increase yet
    CHECK(t.observe(110) == 10.0);
    CHECK(t.observe(110) == 0.0);
    CHECK(t.observe(4) == 4.0);  // the counter restarted: it counted 4 since
    CHECK(t.resets() == 1);
    CHECK(t.observe(10) == 6.0);
    CHECK_FALSE(t.observe(NAN).has_value());  // ignored
    CHECK(t.observe(12) == 2.0);

    // A new _created time is a reset even when the value grew.
    CHECK(t.observe(20, 1000) == 8.0);
    CHECK(t.observe(30, 2000) == 30.0);
    CHECK(t.resets() == 2);
    CHECK(t.observe(35, 2000) == 5.0);

    t.clear();
    CHECK_FALSE(t.observe(1).has_value());
    CHECK(t.observe(3) == 2.0);
    CHECK(t.resets() == 2);
}
