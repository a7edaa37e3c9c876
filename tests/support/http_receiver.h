#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace rollguard::testing {

/// A loopback port held for one test: a socket bound to 127.0.0.1:<port> that never
/// listens. For as long as it lives:
///  - connections to the port are refused (a receiver that is down);
///  - nobody else gets the port: the kernel hands out only ports no socket is bound to
///    for port 0 (other tests' receivers, clients' source ports), and an explicit bind
///    to this port succeeds only for a socket with SO_REUSEADDR, i.e. a server the test
///    itself starts on it (the agent, Prometheus, openssl s_server all set it).
/// Use it instead of "bind port 0, read the port, close the socket, use the port later":
/// under `ctest -j` another test can take a closed port in between. Keep it alive until
/// the server the test started on the port is gone; hand it to HttpReceiver to bring a
/// receiver up on it.
class ReservedPort {
public:
    ReservedPort();
    ~ReservedPort();
    ReservedPort(const ReservedPort&) = delete;
    ReservedPort& operator=(const ReservedPort&) = delete;

    std::uint16_t port() const { return port_; }
    /// "http://127.0.0.1:<port><path>"
    std::string url(const std::string& path = "/") const;

private:
    friend class HttpReceiver;
    int fd_ = -1;  // -1 once an HttpReceiver took the socket over
    std::uint16_t port_ = 0;
};

/// One HTTP request as the receiver saw it.
struct ReceivedRequest {
    std::string method;
    std::string target;  ///< path and query
    std::vector<std::pair<std::string, std::string>> headers;  ///< names lower-cased
    std::string body;

    std::string header(const std::string& lower_name) const;
};

/// A real HTTP/1.1 server on 127.0.0.1 (port 0 = a free port) that records every
/// request and answers with a configurable status. Understands Content-Length and
/// chunked bodies. Used by tests and by the demo's webhook receiver.
/// Thread-safety: all methods are thread-safe.
class HttpReceiver {
public:
    explicit HttpReceiver(std::uint16_t port = 0);
    /// Takes over `reserved`'s socket and listens on it: a receiver that was down comes up
    /// on the same port, which no other socket could take meanwhile.
    explicit HttpReceiver(ReservedPort& reserved);
    ~HttpReceiver();
    HttpReceiver(const HttpReceiver&) = delete;
    HttpReceiver& operator=(const HttpReceiver&) = delete;

    std::uint16_t port() const { return port_; }
    std::string url(const std::string& path = "/") const;

    /// Status for the next requests (default 200), e.g. 503 to simulate an outage.
    void setStatus(int status);
    /// Statuses for the next requests, one each, in order (e.g. {503, 503} for an outage
    /// that heals); after them, the setStatus() one again.
    void queueStatuses(std::vector<int> statuses);
    /// Delay before answering (simulates a slow receiver). Also applies to an answer
    /// being held now: a shorter delay (0: none) releases it at once.
    void setDelay(std::chrono::milliseconds delay);
    /// Body and extra response headers ("Name", "value") for the next answers, instead
    /// of the default "<status> <reason>\n" text/plain body. A "Content-Type" among
    /// `headers` replaces the default one. Bytes are sent verbatim (e.g. a canned gzip
    /// body with {"Content-Encoding", "gzip"}).
    void setBody(std::string body, std::vector<std::pair<std::string, std::string>> headers = {});
    /// When positive, the body is sent one byte at a time with this pause before each
    /// byte (a slow-drip "slowloris" server). 0 (default) sends it at once.
    void setDrip(std::chrono::milliseconds per_byte);

    std::vector<ReceivedRequest> requests() const;
    /// Waits until at least n requests arrived; false on timeout.
    bool waitForRequests(std::size_t n, std::chrono::milliseconds timeout) const;
    /// Returns once every connection made to the receiver before the call has been
    /// handled (it serves them one at a time, in the order they were made): a request
    /// that a client which is gone now (a killed agent) had sent is in requests() by then,
    /// or never will be. Makes a request of its own, which is not recorded.
    void settle() const;

private:
    void start();
    void serve();
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stopping_{false};
    std::atomic<int> status_{200};
    std::atomic<long long> delay_ms_{0};
    std::atomic<long long> drip_ms_{0};
    bool custom_body_ = false;  // guarded by mutex_
    std::string body_;          // guarded by mutex_
    std::vector<std::pair<std::string, std::string>> extra_headers_;  // guarded by mutex_
    mutable std::mutex mutex_;
    mutable std::condition_variable cv_;
    std::vector<ReceivedRequest> requests_;
    std::deque<int> queued_statuses_;  // guarded by mutex_
    std::thread thread_;
};

}  // namespace rollguard::testing
