#pragma once

#include <cstdint>
#include <string>

namespace rollguard::testing {

struct HttpResponse {
    int status = 0;  ///< 0: no answer
    std::string content_type;
    std::string body;
};

/// A minimal blocking HTTP/1.1 GET against 127.0.0.1 (Connection: close), for tests.
HttpResponse httpGet(std::uint16_t port, const std::string& path);

}  // namespace rollguard::testing
