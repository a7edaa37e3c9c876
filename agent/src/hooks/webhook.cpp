// webhook hook: POSTs the breach as JSON with libcurl, retrying transient failures.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include <curl/curl.h>

#include "hooks/hooks_internal.h"
#include "rollguard/agent/hooks.h"

#ifndef ROLLGUARD_VERSION
#define ROLLGUARD_VERSION "0.1"
#endif

namespace rollguard::agent {
namespace {

constexpr std::size_t kMaxResponseBytes = 4096;  // only an excerpt goes into messages
constexpr auto kMaxConnectTimeout = std::chrono::seconds{5};
constexpr auto kMaxBackoff = std::chrono::seconds{60};

void initCurlOnce() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlDeleter {
    void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
struct SlistDeleter {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlHandle = std::unique_ptr<CURL, CurlDeleter>;
using CurlHeaders = std::unique_ptr<curl_slist, SlistDeleter>;

size_t collectResponse(char* data, size_t size, size_t nmemb, void* userdata) {
    auto* out = static_cast<std::string*>(userdata);
    const size_t n = size * nmemb;
    if (out->size() < kMaxResponseBytes) {
        out->append(data, std::min(n, kMaxResponseBytes - out->size()));
    }
    return n;  // keep reading (and discarding) so the status is still reported
}

struct Attempt {
    CURLcode code = CURLE_OK;
    long status = 0;
    std::string error;
    std::string response;
};

bool isRetryable(const Attempt& a) {
    if (a.code == CURLE_OK) {
        return a.status >= 500 || a.status == 429;
    }
    switch (a.code) {
        // A bad URL, a refused protocol or a TLS trust failure will not heal by retrying.
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
        case CURLE_NOT_BUILT_IN:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_BAD_FUNCTION_ARGUMENT:
        case CURLE_OUT_OF_MEMORY:
            return false;
        default:
            return true;
    }
}

// First line of a response body, printable, at most 200 characters.
std::string excerpt(std::string_view body) {
    std::string line = detail::trimText(body.substr(0, body.find('\n')));
    for (char& c : line) {
        if (static_cast<unsigned char>(c) < 0x20) {
            c = ' ';
        }
    }
    if (line.size() > 200) {
        line.resize(200);
        line += "...";
    }
    return line;
}

long clampMillis(std::chrono::nanoseconds d) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    return static_cast<long>(std::max<long long>(ms, 1));
}

class WebhookHook final : public Hook {
public:
    explicit WebhookHook(HookConfig config) : config_(std::move(config)) {}
    const std::string& name() const override { return config_.name; }
    HookType type() const override { return HookType::Webhook; }

    HookResult run(const BreachEvent& event) override {
        const auto start = std::chrono::steady_clock::now();
        HookResult result = post(breachToJson(event));
        result.duration = detail::elapsedSince(start);
        return result;
    }

private:
    HookResult post(const std::string& body) const {
        HookResult result;
        result.attempts = 0;
        if (config_.url.empty()) {
            result.message = "no url configured";
            return result;
        }
        initCurlOnce();

        bool has_content_type = false;
        CurlHeaders headers;
        auto addHeader = [&](const std::string& line) {
            curl_slist* head = curl_slist_append(headers.get(), line.c_str());
            if (head == nullptr) {
                return false;  // the list we had is left intact and still owned
            }
            static_cast<void>(headers.release());  // `head` is the same list, now longer
            headers.reset(head);
            return true;
        };
        for (const auto& [hname, value] : config_.headers) {
            // CR/LF in a header would let a config smuggle extra headers or a body.
            if (hname.empty() || hname.find_first_of(":\r\n") != std::string::npos ||
                value.find_first_of("\r\n") != std::string::npos) {
                result.message = "invalid header '" + hname + "'";
                return result;
            }
            std::string lower = hname;
            std::transform(lower.begin(), lower.end(), lower.begin(),
                           [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
            has_content_type = has_content_type || lower == "content-type";
            if (!addHeader(hname + ": " + value)) {
                result.message = "out of memory building headers";
                return result;
            }
        }
        if (!has_content_type && !addHeader("Content-Type: application/json")) {
            result.message = "out of memory building headers";
            return result;
        }
        // Without this curl waits up to a second for "100 Continue" on larger bodies.
        if (!addHeader("Expect:")) {
            result.message = "out of memory building headers";
            return result;
        }

        auto backoff = config_.retry_backoff;
        for (;;) {
            ++result.attempts;
            const Attempt a = attemptOnce(body, headers.get());
            const bool success = a.code == CURLE_OK && a.status >= 200 && a.status < 300;
            const bool retry = !success && isRetryable(a) && result.attempts <= config_.retries;
            if (!retry) {
                result.ok = success;
                result.message = describe(a, result.attempts, !success && !isRetryable(a));
                return result;
            }
            std::this_thread::sleep_for(backoff);
            backoff = std::min<std::chrono::nanoseconds>(backoff * 2, kMaxBackoff);
        }
    }

    Attempt attemptOnce(const std::string& body, curl_slist* headers) const {
        Attempt a;
        CurlHandle h(curl_easy_init());
        if (!h) {
            a.code = CURLE_FAILED_INIT;
            a.error = "curl_easy_init failed";
            return a;
        }
        char errbuf[CURL_ERROR_SIZE] = {};
        CURL* c = h.get();
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(c, CURLOPT_URL, config_.url.c_str());
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
        curl_easy_setopt(c, CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
        curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        // A redirect would re-send the body and custom headers (tokens) to another URL.
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "rollguard/" ROLLGUARD_VERSION);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, clampMillis(config_.timeout));
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                         clampMillis(std::min<std::chrono::nanoseconds>(config_.timeout, kMaxConnectTimeout)));
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collectResponse);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &a.response);

        a.code = curl_easy_perform(c);
        if (a.code != CURLE_OK) {
            a.error = errbuf[0] != '\0' ? std::string(errbuf) : std::string(curl_easy_strerror(a.code));
            return a;
        }
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
        return a;
    }

    static std::string describe(const Attempt& a, int attempts, bool permanent) {
        std::string msg;
        if (a.code != CURLE_OK) {
            msg = a.error;
        } else {
            msg = "HTTP " + std::to_string(a.status);
            const bool success = a.status >= 200 && a.status < 300;
            const std::string text = success ? std::string() : excerpt(a.response);
            if (!text.empty()) {
                msg += ": " + text;
            }
        }
        if (attempts > 1) {
            msg += " after " + std::to_string(attempts) + " attempts";
        }
        if (permanent) {
            msg += " (not retried)";
        }
        return msg;
    }

    HookConfig config_;
};

}  // namespace

namespace detail {

std::unique_ptr<Hook> makeWebhookHook(const HookConfig& config) {
    return std::make_unique<WebhookHook>(config);
}

}  // namespace detail
}  // namespace rollguard::agent
