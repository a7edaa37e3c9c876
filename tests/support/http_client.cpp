#include "http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

namespace rollguard::testing {

HttpResponse httpGet(std::uint16_t port, const std::string& path) {
    return httpRequest(port, "GET", path, {}, "");
}

HttpResponse httpRequest(std::uint16_t port, const std::string& method, const std::string& path,
                         const std::vector<std::string>& extra_headers, const std::string& body) {
    HttpResponse response;
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return response;
    }
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ::close(fd);
        return response;
    }
    std::string request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    for (const auto& h : extra_headers) {
        request += h + "\r\n";
    }
    if (method != "GET") {
        request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    request += "\r\n" + body;
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
        ::close(fd);
        return response;
    }
    std::string raw;
    char buf[8192];
    for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) {
            break;
        }
        raw.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    const auto header_end = raw.find("\r\n\r\n");
    if (raw.rfind("HTTP/1.", 0) != 0 || header_end == std::string::npos) {
        return response;
    }
    response.status = std::stoi(raw.substr(9, 3));
    std::string headers = raw.substr(0, header_end);
    std::string lower = headers;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    const auto ct = lower.find("\r\ncontent-type:");
    if (ct != std::string::npos) {
        const auto start = ct + 15;
        const auto end = headers.find("\r\n", start);
        response.content_type = headers.substr(start, end - start);
        response.content_type.erase(0, response.content_type.find_first_not_of(' '));
    }
    response.body = raw.substr(header_end + 4);
    return response;
}

}  // namespace rollguard::testing
