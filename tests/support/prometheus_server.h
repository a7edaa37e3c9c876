#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "http_receiver.h"
#include "process.h"
#include "temp_dir.h"

namespace rollguard::testing {

/// One extra scrape job for PrometheusServer's configuration: `targets` are
/// "host:port" strings (loopback ones, for determinism), scraped every second.
struct PrometheusScrapeJob {
    std::string name;
    std::vector<std::string> targets;
    std::string metrics_path = "/metrics";
};

/// A real Prometheus server (Debian package `prometheus`) scraping a real
/// prometheus-node-exporter (package `prometheus-node-exporter`), both on loopback ports
/// reserved for them (ReservedPort), for tests of the promql source. Owns a temp dir
/// with the exporter's textfile directory, prometheus.yml (scrape_interval 1s, job "node" scraping the exporter, plus
/// the extra jobs), the TSDB and both processes' logs.
///
/// The constructor returns once Prometheus answers /-/ready and `up{job="node"}` has a
/// sample in /api/v1/query, or throws std::runtime_error (with both processes' stderr)
/// when that does not happen within `timeout`. Prometheus applies discovered targets in
/// 5 s batches, so the first sample takes about 6 s. The destructor sends SIGTERM to both
/// processes, waits up to 5 s each, then SIGKILLs what is left.
///
/// Thread-safety: const methods may be called from any thread; construction and
/// destruction from one.
class PrometheusServer {
public:
    explicit PrometheusServer(std::vector<PrometheusScrapeJob> extra_jobs = {},
                              std::chrono::milliseconds timeout = std::chrono::seconds{60});
    ~PrometheusServer();
    PrometheusServer(const PrometheusServer&) = delete;
    PrometheusServer& operator=(const PrometheusServer&) = delete;

    /// True when both /usr/bin/prometheus and a node exporter binary are executable.
    static bool available();

    /// "http://127.0.0.1:PORT", without a trailing slash.
    std::string url() const;
    std::uint16_t port() const { return port_; }
    std::uint16_t exporterPort() const { return exporter_port_; }
    /// The node exporter's textfile collector directory: *.prom files written there
    /// (atomically) are served by the exporter and scraped by Prometheus.
    std::string textfileDir() const;
    /// Both processes' logs so far, for failure messages.
    std::string logs() const;

private:
    void stop(std::unique_ptr<Process>& process);

    TempDir dir_;
    // Held while the processes live (declared before them, so destroyed after them).
    ReservedPort reserved_;
    ReservedPort exporter_reserved_;
    std::uint16_t port_ = reserved_.port();
    std::uint16_t exporter_port_ = exporter_reserved_.port();
    std::unique_ptr<Process> exporter_;
    std::unique_ptr<Process> prometheus_;
};

/// Percent-encodes `text` for a URL query value (RFC 3986 unreserved kept). Pure.
std::string urlEncode(const std::string& text);

}  // namespace rollguard::testing
