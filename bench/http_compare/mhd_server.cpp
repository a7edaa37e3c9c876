// Minimal libmicrohttpd server for bench/compare_http_servers.sh: the settings of
// exporters/src/http_server.cpp (one epoll event loop, suspend/resume, 4096 connections,
// 10 s idle timeout, 32 KiB per connection) answering two fixed bodies:
//   GET /small  ~60-byte JSON (like the deploy gate)
//   GET /large  30 KiB text  (like /metrics)
// Usage: mhd_server PORT [PER_IP_LIMIT]   (rollguard uses 64; the comparison passes 0 =
// no per-IP cap, because wrk and the idle clients all connect from 127.0.0.1).
// Prints "ready" on stdout once listening; runs until SIGINT/SIGTERM.
#include <microhttpd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <netinet/in.h>
#include <unistd.h>

namespace {

const std::string kSmall = R"({"allowed":true,"reason":"all rules healthy","firing":[]})" "\n";

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

MHD_Response* g_small = nullptr;
MHD_Response* g_large = nullptr;
MHD_Response* g_missing = nullptr;
volatile std::sig_atomic_t g_stop = 0;

MHD_Result access(void*, MHD_Connection* conn, const char* url, const char* method, const char*, const char*,
                  size_t* upload_size, void** con_cls) {
    static int marker;
    if (*con_cls == nullptr) {  // first call: headers only
        *con_cls = &marker;
        return MHD_YES;
    }
    if (*upload_size != 0) {  // ignore any body
        *upload_size = 0;
        return MHD_YES;
    }
    if (std::strcmp(method, "GET") != 0 && std::strcmp(method, "HEAD") != 0) {
        return MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, g_missing);
    }
    if (std::strcmp(url, "/small") == 0) {
        return MHD_queue_response(conn, MHD_HTTP_OK, g_small);
    }
    if (std::strcmp(url, "/large") == 0) {
        return MHD_queue_response(conn, MHD_HTTP_OK, g_large);
    }
    return MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, g_missing);
}

MHD_Response* fixed(const std::string& body, const char* type) {
    MHD_Response* r = MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()),
                                                      MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s PORT [PER_IP_LIMIT]\n", argv[0]);
        return 2;
    }
    const auto port = static_cast<unsigned short>(std::atoi(argv[1]));
    const unsigned int per_ip = argc > 2 ? static_cast<unsigned int>(std::atoi(argv[2])) : 64U;
    const std::string large = makeLarge();
    g_small = fixed(kSmall, "application/json");
    g_large = fixed(large, "text/plain; version=0.0.4; charset=utf-8");
    g_missing = fixed("not found\n", "text/plain; charset=utf-8");

    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    // The same flags and options as rollguard's listener (per-IP limit: see above).
    MHD_Daemon* d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, nullptr, nullptr, &access,
        nullptr, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_CONNECTION_LIMIT, 4096U,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip, MHD_OPTION_CONNECTION_TIMEOUT, 10U,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<size_t>(32 * 1024), MHD_OPTION_END);
    if (d == nullptr) {
        std::perror("MHD_start_daemon");
        return 1;
    }
    std::signal(SIGINT, [](int) { g_stop = 1; });
    std::signal(SIGTERM, [](int) { g_stop = 1; });
    std::printf("ready\n");
    std::fflush(stdout);
    while (g_stop == 0) {
        ::pause();
    }
    MHD_stop_daemon(d);
    MHD_destroy_response(g_small);
    MHD_destroy_response(g_large);
    MHD_destroy_response(g_missing);
    return 0;
}
