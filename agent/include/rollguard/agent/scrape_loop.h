#pragma once
// The scrape sources at run time: one thread scrapes every prometheus, json, health,
// process and promql source on its interval through one Scraper (libcurl multi, no
// thread per target), turns each answer into store data for the rules' streams, and
// keeps per-target figures for /metrics and the status API.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/agent/sliding_window.h"
#include "rollguard/rules/clock.h"

namespace rollguard::agent {

class Judge;

/// Histogram settings of a scrape stream in the store. Value series keep no latency and
/// get a tiny histogram; event series with latency the default (1 us .. 1 h, 3 figures).
/// The judge and the scrape loop must agree, so both call this.
HistogramSettings histogramSettingsFor(const ScrapeStream& stream);

/// One target's figures. A target is one URL (prometheus, json, health), one query of a
/// promql source, a local JSON file or a process selector.
struct ScrapeTargetStatus {
    std::string source;  ///< the [[source]] name
    std::string type;    ///< "prometheus", "json", ...
    std::string target;  ///< the URL, file path, or process selector ("pid_file=/run/x.pid")
    std::string series;  ///< promql: the series this query feeds; "" otherwise
    bool up = false;     ///< the last scrape succeeded (transport and content)
    std::uint64_t scrapes = 0;
    std::map<std::string, std::uint64_t> errors;  ///< failed scrapes by kind
    double last_duration_seconds = 0.0;
    std::optional<rules::TimePoint> last_scrape;  ///< system clock
    std::string last_error;                       ///< "" after a success
    std::uint64_t samples = 0;         ///< samples (or values) read by the last good scrape
    std::uint64_t counter_resets = 0;  ///< counter resets seen (all series of the target)
};

/// What the scrapes produced since the last take(): store parts for the judge's streams,
/// and for each stream whose fetch state changed, whether its last scrape failed.
struct ScrapeHarvest {
    struct Part {
        std::size_t source = 0;  ///< judge source index
        RecordedPart part;       ///< arrival time (part.at empty)
    };
    std::vector<Part> parts;
    std::vector<std::pair<std::size_t, bool>> fetch_errors;  ///< (judge source, failed)
};

/// Runs the scrape sources of a config.
///
/// Scheduling: each target is scraped every `interval`, at a stable offset inside it
/// (jitteredOffset of the target and host name when `jitter`, else at the interval's
/// start); a target still in flight when due again skips that turn. Requests are bounded
/// by `timeout` (<= interval) and `max_bytes`.
///
/// What a scrape records (one part per stream and label set, arrival time):
///  - gauge: the value (summed over the matching series of a label set);
///  - counter: the increase since the previous scrape (per series, resets handled as
///    Prometheus' increase() does; nothing on a series' first scrape);
///  - events: increases as events and errors;
///  - histogram: bucket increases spread evenly inside each bucket (16 points at most
///    per bucket), observations above `errors_above` as errors;
///  - promql query: each result sample's value (a scalar is one value without labels);
///  - up: 1 or 0 for every URL scrape; health checks: one event, an error when failed,
///    latency = response time; process: rss_bytes, cpu_percent, open_fds, threads,
///    processes.
/// A failed scrape (transport, HTTP status, unparseable body, missing JSON value, promql
/// error) records no data on the target's streams, marks them fetch-failed (so a rule's
/// `on_error` applies) and is counted by kind; "up" records 0. An empty promql result
/// is not a failure: it is no data.
///
/// Secrets (bearer token, basic-auth password) are read from their files or environment
/// variables on every scrape, so a rotated token is picked up; a secret that cannot be
/// read fails the scrape (kind "credentials").
///
/// Thread-safety: construct, start(), stop() and scrapeOnce() from one thread (the
/// daemon's); take() and status() from any thread.
class ScrapeLoop {
public:
    /// Resolves each scrape stream to its judge source (by name) and router. The judge
    /// must outlive the loop. Host name: for the jitter offset.
    ScrapeLoop(const Config& config, Judge& judge, std::string host);
    ~ScrapeLoop();
    ScrapeLoop(const ScrapeLoop&) = delete;
    ScrapeLoop& operator=(const ScrapeLoop&) = delete;

    /// True when the config has no scrape source (nothing to run).
    bool empty() const;
    /// Starts the scrape thread. Idempotent.
    void start();
    /// Stops the thread, abandoning scrapes in flight. Idempotent.
    void stop();
    /// Scrapes every target once on the calling thread and waits for all answers (tests
    /// and tools). Only while the thread is not running.
    void scrapeOnce();

    /// Everything recorded since the last take().
    ScrapeHarvest take();
    /// Every target's figures, in config order.
    std::vector<ScrapeTargetStatus> status() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace rollguard::agent
