#include "http_receiver.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace rollguard::testing {
namespace {

constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
constexpr std::size_t kMaxBodyBytes = 16 * 1024 * 1024;
constexpr auto kIdleTimeout = std::chrono::seconds{5};
// The target of settle()'s own request: answered, never recorded.
constexpr const char* kSettleTarget = "/.rollguard-test-settle";

sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

std::string trim(std::string_view s) {
    const auto first = s.find_first_not_of(" \t");
    if (first == std::string_view::npos) {
        return {};
    }
    const auto last = s.find_last_not_of(" \t");
    return std::string(s.substr(first, last - first + 1));
}

const char* reasonPhrase(int status) {
    switch (status) {
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 202:
            return "Accepted";
        case 204:
            return "No Content";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 429:
            return "Too Many Requests";
        case 500:
            return "Internal Server Error";
        case 502:
            return "Bad Gateway";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Gateway Timeout";
        default:
            return "Status";
    }
}

// Reads from one client connection with a short poll so that stopping is noticed and an
// idle client cannot hold the (single) serving thread for long.
class Connection {
public:
    Connection(int fd, const std::atomic<bool>& stopping) : fd_(fd), stopping_(stopping) {}
    ~Connection() { ::close(fd_); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    int fd() const { return fd_; }

    // Appends more bytes to buf_; false on EOF, error, idle timeout or stop.
    bool readMore() {
        const auto deadline = std::chrono::steady_clock::now() + kIdleTimeout;
        while (!stopping_.load()) {
            pollfd p{fd_, POLLIN, 0};
            const int rc = ::poll(&p, 1, 100);
            if (rc < 0 && errno != EINTR) {
                return false;
            }
            if (rc > 0) {
                char chunk[16 * 1024];
                const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
                if (n < 0 && errno == EINTR) {
                    continue;
                }
                if (n <= 0) {
                    return false;
                }
                buf_.append(chunk, static_cast<std::size_t>(n));
                return true;
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                return false;
            }
        }
        return false;
    }

    // The next line ending in CRLF (without it), reading as needed.
    bool readLine(std::string& line) {
        for (;;) {
            const auto pos = buf_.find("\r\n", consumed_);
            if (pos != std::string::npos) {
                line = buf_.substr(consumed_, pos - consumed_);
                consumed_ = pos + 2;
                return true;
            }
            if (buf_.size() - consumed_ > kMaxHeaderBytes || !readMore()) {
                return false;
            }
        }
    }

    bool readExactly(std::size_t n, std::string& out) {
        while (buf_.size() - consumed_ < n) {
            if (!readMore()) {
                return false;
            }
        }
        out.append(buf_, consumed_, n);
        consumed_ += n;
        return true;
    }

    void sendAll(std::string_view data) {
        while (!data.empty()) {
            // MSG_NOSIGNAL: a client that gave up (timeout) must not SIGPIPE the tests.
            const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return;
            }
            data.remove_prefix(static_cast<std::size_t>(n));
        }
    }

private:
    int fd_;
    const std::atomic<bool>& stopping_;
    std::string buf_;
    std::size_t consumed_ = 0;
};

bool readChunkedBody(Connection& conn, std::string& body) {
    for (;;) {
        std::string size_line;
        if (!conn.readLine(size_line)) {
            return false;
        }
        const std::string hex = trim(size_line.substr(0, size_line.find(';')));
        if (hex.empty() || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos || hex.size() > 8) {
            return false;
        }
        const std::size_t size = std::stoul(hex, nullptr, 16);
        if (size == 0) {
            std::string trailer;
            do {
                if (!conn.readLine(trailer)) {
                    return false;
                }
            } while (!trailer.empty());
            return true;
        }
        if (body.size() + size > kMaxBodyBytes || !conn.readExactly(size, body)) {
            return false;
        }
        std::string crlf;
        if (!conn.readLine(crlf) || !crlf.empty()) {
            return false;
        }
    }
}

// Parses one request; false when it is malformed or the client went away.
bool readRequest(Connection& conn, ReceivedRequest& req) {
    std::string line;
    if (!conn.readLine(line)) {
        return false;
    }
    const auto sp1 = line.find(' ');
    const auto sp2 = line.find(' ', sp1 == std::string::npos ? line.size() : sp1 + 1);
    if (sp1 == std::string::npos || sp2 == std::string::npos) {
        return false;
    }
    req.method = line.substr(0, sp1);
    req.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    for (;;) {
        if (!conn.readLine(line)) {
            return false;
        }
        if (line.empty()) {
            break;
        }
        const auto colon = line.find(':');
        if (colon == std::string::npos || colon == 0) {
            return false;
        }
        req.headers.emplace_back(lower(line.substr(0, colon)), trim(std::string_view(line).substr(colon + 1)));
    }
    if (lower(req.header("transfer-encoding")).find("chunked") != std::string::npos) {
        return readChunkedBody(conn, req.body);
    }
    const std::string length = req.header("content-length");
    if (length.empty()) {
        return true;
    }
    if (length.find_first_not_of("0123456789") != std::string::npos || length.size() > 9) {
        return false;
    }
    const std::size_t n = std::stoul(length);
    return n <= kMaxBodyBytes && conn.readExactly(n, req.body);
}

}  // namespace

std::string ReceivedRequest::header(const std::string& lower_name) const {
    for (const auto& [name, value] : headers) {
        if (name == lower_name) {
            return value;
        }
    }
    return {};
}

HttpReceiver::HttpReceiver(std::uint16_t port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) {
        throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    }
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const sockaddr_in addr = loopback(port);
    if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        const int err = errno;
        ::close(listen_fd_);
        throw std::runtime_error("cannot bind 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(err));
    }
    start();
}

HttpReceiver::HttpReceiver(ReservedPort& reserved) {
    if (reserved.fd_ < 0) {
        throw std::logic_error("port " + std::to_string(reserved.port_) + " was already handed to a receiver");
    }
    listen_fd_ = std::exchange(reserved.fd_, -1);
    start();
}

void HttpReceiver::start() {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    if (::listen(listen_fd_, 64) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        const int err = errno;
        ::close(listen_fd_);
        throw std::runtime_error(std::string("cannot listen on 127.0.0.1: ") + std::strerror(err));
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
}

HttpReceiver::~HttpReceiver() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    cv_.notify_all();
    // Wakes the blocking accept(): on Linux it then fails with EINVAL.
    ::shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    ::close(listen_fd_);
}

std::string HttpReceiver::url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
}

void HttpReceiver::setStatus(int status) {
    status_ = status;
}

void HttpReceiver::queueStatuses(std::vector<int> statuses) {
    std::lock_guard lock(mutex_);
    queued_statuses_.insert(queued_statuses_.end(), statuses.begin(), statuses.end());
}

void HttpReceiver::setDelay(std::chrono::milliseconds delay) {
    {
        std::lock_guard lock(mutex_);  // so that a held answer's wait cannot miss the change
        delay_ms_ = delay.count();
    }
    cv_.notify_all();
}

void HttpReceiver::setBody(std::string body, std::vector<std::pair<std::string, std::string>> headers) {
    std::lock_guard lock(mutex_);
    custom_body_ = true;
    body_ = std::move(body);
    extra_headers_ = std::move(headers);
}

void HttpReceiver::setDrip(std::chrono::milliseconds per_byte) {
    drip_ms_ = per_byte.count();
}

std::vector<ReceivedRequest> HttpReceiver::requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
}

bool HttpReceiver::waitForRequests(std::size_t n, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
}

void HttpReceiver::serve() {
    while (!stopping_.load()) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            if (stopping_.load()) {
                return;
            }
            if (errno != EINTR && errno != ECONNABORTED) {
                std::this_thread::sleep_for(std::chrono::milliseconds{10});
            }
            continue;
        }
        Connection conn(fd, stopping_);
        ReceivedRequest req;
        if (!readRequest(conn, req)) {
            conn.sendAll("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            continue;
        }
        if (req.target == kSettleTarget) {
            conn.sendAll("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            ::shutdown(conn.fd(), SHUT_WR);
            continue;
        }
        // Recorded before the reply, so a client that saw the answer finds its request here.
        int status = status_.load();
        {
            std::lock_guard lock(mutex_);
            requests_.push_back(std::move(req));
            if (!queued_statuses_.empty()) {
                status = queued_statuses_.front();
                queued_statuses_.pop_front();
            }
        }
        cv_.notify_all();
        const auto delay = std::chrono::milliseconds{delay_ms_.load()};
        if (delay.count() > 0) {
            // Held until the delay (or a shorter one setDelay() sets meanwhile) has passed.
            const auto held_since = std::chrono::steady_clock::now();
            std::unique_lock lock(mutex_);
            cv_.wait_for(lock, delay, [&] {
                return stopping_.load() ||
                       std::chrono::steady_clock::now() - held_since >= std::chrono::milliseconds{delay_ms_.load()};
            });
        }
        std::string body = std::to_string(status) + " " + reasonPhrase(status) + "\n";
        std::vector<std::pair<std::string, std::string>> extra;
        {
            std::lock_guard lock(mutex_);
            if (custom_body_) {
                body = body_;
                extra = extra_headers_;
            }
        }
        std::string head = "HTTP/1.1 " + std::to_string(status) + " " + reasonPhrase(status) + "\r\n";
        const bool own_type = std::any_of(extra.begin(), extra.end(),
                                          [](const auto& h) { return lower(h.first) == "content-type"; });
        if (!own_type) {
            head += "Content-Type: text/plain\r\n";
        }
        for (const auto& [name, value] : extra) {
            head += name + ": " + value + "\r\n";
        }
        head += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
        const auto drip = std::chrono::milliseconds{drip_ms_.load()};
        if (drip.count() <= 0) {
            conn.sendAll(head + body);
        } else {
            conn.sendAll(head);
            for (const char byte : body) {
                std::unique_lock lock(mutex_);
                if (cv_.wait_for(lock, drip, [this] { return stopping_.load(); })) {
                    break;
                }
                lock.unlock();
                conn.sendAll(std::string_view(&byte, 1));
            }
        }
        ::shutdown(conn.fd(), SHUT_WR);
    }
}

void HttpReceiver::settle() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    }
    const sockaddr_in addr = loopback(port_);
    const std::string request = std::string("GET ") + kSettleTarget + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    bool answered = false;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
        ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
        // The answer comes after every earlier connection was handled; a held (setDelay)
        // answer before it may take long, hence the generous bound against a hang.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{60};
        std::string reply;
        while (std::chrono::steady_clock::now() < deadline) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) {
                continue;
            }
            char buf[256];
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                break;
            }
            reply.append(buf, static_cast<std::size_t>(n));
        }
        answered = reply.rfind("HTTP/1.1 204", 0) == 0;
    }
    ::close(fd);
    if (!answered) {
        throw std::runtime_error("receiver on port " + std::to_string(port_) + " did not settle");
    }
}

ReservedPort::ReservedPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
        throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    }
    // SO_REUSEADDR lets the server the test starts bind the port while this socket holds
    // it (Linux allows that as long as no socket listens on it yet); sockets without it
    // cannot, and port 0 never hands out a port that a socket is bound to.
    const int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr = loopback(0);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        const int err = errno;
        ::close(fd_);
        throw std::runtime_error(std::string("cannot reserve a loopback port: ") + std::strerror(err));
    }
    port_ = ntohs(addr.sin_port);
}

ReservedPort::~ReservedPort() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

std::string ReservedPort::url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
}

}  // namespace rollguard::testing
