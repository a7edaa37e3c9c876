#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rollguard::testing {

struct HttpResponse {
    int status = 0;  ///< 0: no answer
    std::string content_type;
    std::string body;
};

/// A minimal blocking HTTP/1.1 GET against 127.0.0.1 (Connection: close), for tests.
HttpResponse httpGet(std::uint16_t port, const std::string& path);
/// The same with any method, extra header lines ("Name: value") and a body.
HttpResponse httpRequest(std::uint16_t port, const std::string& method, const std::string& path,
                         const std::vector<std::string>& headers, const std::string& body);

}  // namespace rollguard::testing
