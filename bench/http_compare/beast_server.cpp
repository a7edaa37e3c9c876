// Minimal Boost.Beast/Asio server for bench/compare_http_servers.sh: what rollguard's
// listener would be without libmicrohttpd. One io_context thread (like MHD's one epoll
// loop), async accept/read/write, keep-alive, the same two fixed bodies:
//   GET /small  ~60-byte JSON (like the deploy gate)
//   GET /large  30 KiB text  (like /metrics)
// and the protective behaviour MHD gives rollguard by options, written here by hand:
// 32 KiB header limit (431), 64 KiB body limit (413), 10 s deadline per read and per
// write (beast::tcp_stream::expires_after), 4096 connections in all (more are closed at
// accept), accept errors (EMFILE) backed off instead of spun on. That code sits between
// "// guard{" and "// guard}" markers; the benchmark script counts its lines.
// Note: MHD's timeout restarts at every byte received; expires_after before async_read
// is a deadline for the whole request (a stricter rule against slow-drip clients).
// Usage: beast_server PORT. Prints "ready" on stdout once listening; SIGINT/SIGTERM stop it.
// <utility> first: Boost 1.74's asio/awaitable.hpp uses std::exchange without including
// it, which g++ 12 in C++20 mode rejects.
#include <utility>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

const std::string kSmall = R"({"allowed":true,"reason":"all rules healthy","firing":[]})" "\n";
const std::string kNotFound = "not found\n";

std::string makeLarge() {
    std::string s;
    s.reserve(30 * 1024);
    for (int i = 0; s.size() < 30 * 1024; ++i) {
        s += "rollguard_series_total{rule=\"r" + std::to_string(i) + "\",source=\"app\"} " + std::to_string(i * 7) +
             "\n";
    }
    s.resize(30 * 1024);
    s.back() = '\n';
    return s;
}

const std::string kLarge = makeLarge();

// guard{
constexpr std::size_t kMaxConnections = 4096;
constexpr std::uint32_t kHeaderLimit = 32 * 1024;
constexpr std::uint64_t kBodyLimit = 64 * 1024;
constexpr std::chrono::seconds kTimeout{10};
std::size_t g_connections = 0;  // one io_context thread: no lock needed
// guard}

class Session : public std::enable_shared_from_this<Session> {
public:
    explicit Session(tcp::socket socket) : stream_(std::move(socket)) {
        ++g_connections;  // guard (one line)
    }
    // guard{
    ~Session() { --g_connections; }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    // guard}

    void start() { read(); }

private:
    void read() {
        parser_.emplace();
        // guard{
        parser_->header_limit(kHeaderLimit);
        parser_->body_limit(kBodyLimit);
        stream_.expires_after(kTimeout);
        // guard}
        http::async_read(stream_, buffer_, *parser_,
                         [self = shared_from_this()](beast::error_code ec, std::size_t) { self->onRead(ec); });
    }

    void onRead(beast::error_code ec) {
        // guard{
        if (ec == http::error::header_limit) {
            return reject(http::status::request_header_fields_too_large);
        }
        if (ec == http::error::body_limit) {
            return reject(http::status::payload_too_large);
        }
        // guard}
        if (ec) {  // end of stream, reset, timeout (beast::error::timeout), bad request
            return close();
        }
        const auto& req = parser_->get();
        res_ = {};
        res_.version(req.version());
        res_.keep_alive(req.keep_alive());
        res_.set(http::field::cache_control, "no-store");
        if (req.method() != http::verb::get) {
            respond(http::status::method_not_allowed, "text/plain; charset=utf-8", kNotFound);
        } else if (req.target() == "/small") {
            respond(http::status::ok, "application/json", kSmall);
        } else if (req.target() == "/large") {
            respond(http::status::ok, "text/plain; version=0.0.4; charset=utf-8", kLarge);
        } else {
            respond(http::status::not_found, "text/plain; charset=utf-8", kNotFound);
        }
    }

    void respond(http::status status, const char* type, const std::string& body) {
        res_.result(status);
        res_.set(http::field::content_type, type);
        res_.body() = http::span_body<const char>::value_type(body.data(), body.size());
        res_.prepare_payload();
        stream_.expires_after(kTimeout);  // guard (one line): a client that does not read
        http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec || self->res_.need_eof()) {
                return self->close();
            }
            self->read();
        });
    }

    // guard{
    /// Answers an oversized request with its status, then closes (its rest is unread).
    void reject(http::status status) {
        res_ = {};
        res_.version(11);
        res_.keep_alive(false);
        res_.result(status);
        res_.prepare_payload();
        stream_.expires_after(kTimeout);
        http::async_write(stream_, res_,
                          [self = shared_from_this()](beast::error_code, std::size_t) { self->close(); });
    }
    // guard}

    void close() {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
        stream_.socket().close(ignored);
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::empty_body>> parser_;
    http::response<http::span_body<const char>> res_;
};

class Listener {
public:
    Listener(net::io_context& ioc, const tcp::endpoint& endpoint) : acceptor_(ioc), backoff_(ioc) {
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(net::socket_base::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen(net::socket_base::max_listen_connections);
    }

    void accept() {
        acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
            // guard{
            if (ec) {  // EMFILE/ENFILE/ENOBUFS: retry later instead of spinning on the error
                backoff_.expires_after(std::chrono::milliseconds(50));
                backoff_.async_wait([this](beast::error_code) { accept(); });
                return;
            }
            if (g_connections >= kMaxConnections) {  // over the cap: close at once
                beast::error_code ignored;
                socket.close(ignored);
                accept();
                return;
            }
            // guard}
            beast::error_code ignored;
            socket.set_option(tcp::no_delay(true), ignored);
            std::make_shared<Session>(std::move(socket))->start();
            accept();
        });
    }

private:
    tcp::acceptor acceptor_;
    net::steady_timer backoff_;  // guard (one line)
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    const auto port = static_cast<unsigned short>(std::atoi(argv[1]));
    try {
        net::io_context ioc{1};
        Listener listener(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
        listener.accept();
        net::signal_set signals(ioc, SIGINT, SIGTERM);
        signals.async_wait([&ioc](beast::error_code, int) { ioc.stop(); });
        std::printf("ready\n");
        std::fflush(stdout);
        ioc.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "beast_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
