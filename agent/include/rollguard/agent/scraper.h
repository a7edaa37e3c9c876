#pragma once
// The HTTP fetch engine behind the scrape sources (prometheus, json, health, promql):
// many GETs performed concurrently on the calling thread through one libcurl multi
// handle, each bounded by its own timeout and body cap, each failure classified by kind.
// Pure transport: no parsing, no config, no clock of its own beyond curl's timers.
// This header does not include curl.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rollguard::agent {

/// One GET to perform. A plain value type.
struct ScrapeRequest {
    /// Absolute http:// or https:// URL. Any other scheme fails (kind Other).
    std::string url;
    /// Extra request headers, each a whole "Name: value" line, sent verbatim (e.g.
    /// "Accept: " + kScrapeAcceptHeader). No default Accept is added beyond curl's
    /// "*/*". A header containing CR or LF is refused (kind Other), never sent.
    std::vector<std::string> headers;
    /// Whole-transfer deadline (resolve, connect, TLS, headers and body), rounded up to
    /// whole milliseconds. It also bounds slow-drip responses. Must be positive; zero
    /// or negative fails the request (kind Other) without any I/O.
    std::chrono::nanoseconds timeout{std::chrono::seconds{10}};
    /// Cap on the decoded body in bytes (after gzip decoding, so a gzip bomb is bounded
    /// too); a body over it aborts the transfer (kind TooLarge). 0 means no cap, as in
    /// Prometheus' body_size_limit.
    std::size_t max_bytes = 0;
    /// Sends "Accept-Encoding: gzip" and decodes a gzip body. When false nothing is
    /// advertised and a body is returned as received.
    bool accept_gzip = true;
    /// When non-empty, sent as "Authorization: Bearer <token>". Must not contain CR/LF.
    std::string bearer_token;
    /// When basic_user is non-empty, HTTP basic auth with these credentials. Setting
    /// both a bearer token and basic auth is refused (kind Other).
    std::string basic_user, basic_password;
    /// TLS: a CA bundle file to verify the server with (empty = system store), and a
    /// PEM client certificate and key for mutual TLS (empty = none).
    std::string ca_file, client_cert, client_key;
    /// Skips TLS peer and host name verification (testing only).
    bool insecure = false;
};

/// Why a scrape failed. None means a 2xx response was received whole.
enum class ScrapeErrorKind { None, Dns, Connect, Timeout, Tls, HttpStatus, TooLarge, Decode, Other };

/// Lower-case stable name for metrics and logs: "none", "dns", "connect", "timeout",
/// "tls", "http_status", "too_large", "decode", "other". Pure; thread-safe.
std::string_view toString(ScrapeErrorKind kind);

/// The kind a libcurl CURLcode (passed as its int value) maps to: resolve failures →
/// Dns, connect failures → Connect, CURLE_OPERATION_TIMEDOUT → Timeout, SSL/TLS and
/// peer verification errors → Tls, CURLE_BAD_CONTENT_ENCODING → Decode,
/// CURLE_FILESIZE_EXCEEDED → TooLarge, CURLE_OK → None, anything else → Other. A write
/// error caused by the body cap is reported as TooLarge by Scraper itself, not here.
/// Pure; thread-safe.
ScrapeErrorKind scrapeErrorKindFromCurlCode(int curl_code);

/// The outcome of one ScrapeRequest.
struct ScrapeResponse {
    /// HTTP status of the response, 0 when none was received.
    long status = 0;
    /// The Content-Type header as sent, "" when absent.
    std::string content_type;
    /// The body, decoded (gzip handled by curl). Kept for non-2xx answers too; empty
    /// or partial (never over max_bytes) when the transfer failed.
    std::string body;
    ScrapeErrorKind error = ScrapeErrorKind::Other;
    /// "" on success; else one line: curl's error text, "HTTP <status>" or
    /// "response over <N> bytes".
    std::string message;
    /// Wall time of the transfer as curl measured it (0 when it never started).
    std::chrono::nanoseconds duration{0};

    bool ok() const { return error == ScrapeErrorKind::None; }
};

/// Performs batches of GETs concurrently on the calling thread (curl_multi_perform +
/// curl_multi_poll, no thread per target). Owns one libcurl multi handle, whose
/// connection cache keeps connections alive between calls, and a pool of easy handles
/// reused across calls. Redirects are never followed (a 3xx is an HttpStatus result);
/// only http and https are allowed; proxy environment variables (http_proxy, ...) are
/// ignored. Never throws in steady state (except
/// std::bad_alloc): every failure is a ScrapeResponse.
///
/// Thread-safety: not thread-safe; use one Scraper from one thread at a time. Distinct
/// Scraper objects are independent and may be used concurrently from different threads.
class Scraper {
public:
    Scraper();
    ~Scraper();
    Scraper(const Scraper&) = delete;
    Scraper& operator=(const Scraper&) = delete;

    /// Performs all requests at once and blocks until every one has completed, failed or
    /// hit its own timeout; the call takes about as long as the slowest request. Returns
    /// one response per request, in the same order.
    std::vector<ScrapeResponse> fetchAll(const std::vector<ScrapeRequest>& requests);

    /// Starts one request without waiting for it and returns its id (never 0). Its
    /// response is returned by a later poll(). A request that fails before any I/O
    /// (validation) is returned by the next poll() at once. Must not be mixed with a
    /// concurrent fetchAll (there is none: the class is single-threaded).
    std::uint64_t start(const ScrapeRequest& request);
    /// Drives the transfers started so far for at most `wait` (returning as soon as one
    /// completes, or wakeup() is called) and returns those that completed, as
    /// (id, response), in completion order.
    std::vector<std::pair<std::uint64_t, ScrapeResponse>> poll(std::chrono::nanoseconds wait);
    /// Transfers started and not yet returned by poll().
    std::size_t inFlight() const;
    /// Makes a poll() blocked in another thread return early. Thread-safe (the only
    /// member that is).
    void wakeup();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// A stable offset in [0, interval) for the target named `target_key` (e.g. its URL
/// plus the host name), taken from a 64-bit FNV-1a hash of the key, so that many
/// sidecars scraping on the same interval spread out instead of aligning (as
/// Prometheus' per-target scrape offset does). The same key and interval always give the
/// same offset, across runs and machines. A non-positive interval gives 0. Pure;
/// thread-safe.
std::chrono::nanoseconds jitteredOffset(std::string_view target_key, std::chrono::nanoseconds interval);

}  // namespace rollguard::agent
