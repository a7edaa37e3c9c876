#pragma once
// One HTTP POST with libcurl, classified for retrying; shared by the webhook and
// alertmanager hooks.

#include <chrono>
#include <string>
#include <vector>

namespace rollguard::agent::detail {

struct PostOutcome {
    bool ok = false;         ///< 2xx
    bool permanent = false;  ///< will not heal by retrying: 4xx but 429, 3xx, bad URL, TLS trust
    long status = 0;         ///< HTTP status, 0 when none arrived
    std::string message;     ///< "HTTP 200", "HTTP 400: <first body line>", or curl's error text
};

/// POSTs `body` with `headers` ("Name: value" lines, already validated) to an http(s)
/// URL; redirects are not followed. `timeout` bounds the whole attempt (connect at
/// most 5 s). Never throws. Thread-safe.
PostOutcome httpPost(const std::string& url, const std::vector<std::string>& headers, const std::string& body,
                     std::chrono::nanoseconds timeout);

}  // namespace rollguard::agent::detail
