// One libcurl POST, classified: delivered, worth retrying, or not.
#include "hooks/http_post.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <curl/curl.h>

#include "hooks/hooks_internal.h"

#ifndef ROLLGUARD_VERSION
#define ROLLGUARD_VERSION "0.1"
#endif

namespace rollguard::agent::detail {
namespace {

constexpr std::size_t kMaxResponseBytes = 4096;  // only an excerpt goes into messages
constexpr auto kMaxConnectTimeout = std::chrono::seconds{5};

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

bool isPermanentCurlError(CURLcode code) {
    switch (code) {
        // A bad URL, a refused protocol or a TLS trust failure will not heal by retrying.
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
        case CURLE_NOT_BUILT_IN:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_BAD_FUNCTION_ARGUMENT:
        case CURLE_OUT_OF_MEMORY:
            return true;
        default:
            return false;
    }
}

// First line of a response body, printable, at most 200 characters.
std::string excerpt(std::string_view body) {
    std::string line = trimText(body.substr(0, body.find('\n')));
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

}  // namespace

PostOutcome httpPost(const std::string& url, const std::vector<std::string>& headers, const std::string& body,
                     std::chrono::nanoseconds timeout) {
    PostOutcome out;
    if (url.empty()) {
        out.permanent = true;
        out.message = "no url configured";
        return out;
    }
    initCurlOnce();
    CurlHeaders list;
    auto addHeader = [&](const std::string& line) {
        curl_slist* head = curl_slist_append(list.get(), line.c_str());
        if (head == nullptr) {
            return false;  // the list we had is left intact and still owned
        }
        static_cast<void>(list.release());  // `head` is the same list, now longer
        list.reset(head);
        return true;
    };
    for (const auto& h : headers) {
        if (!addHeader(h)) {
            out.message = "out of memory building headers";
            return out;
        }
    }
    // Without this curl waits up to a second for "100 Continue" on larger bodies.
    if (!addHeader("Expect:")) {
        out.message = "out of memory building headers";
        return out;
    }

    CurlHandle h(curl_easy_init());
    if (!h) {
        out.message = "curl_easy_init failed";
        return out;
    }
    char errbuf[CURL_ERROR_SIZE] = {};
    std::string response;
    CURL* c = h.get();
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
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
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
    curl_easy_setopt(c, CURLOPT_USERAGENT, "rollguard/" ROLLGUARD_VERSION);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, clampMillis(timeout));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     clampMillis(std::min<std::chrono::nanoseconds>(timeout, kMaxConnectTimeout)));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collectResponse);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &response);

    const CURLcode code = curl_easy_perform(c);
    if (code != CURLE_OK) {
        out.message = errbuf[0] != '\0' ? std::string(errbuf) : std::string(curl_easy_strerror(code));
        out.permanent = isPermanentCurlError(code);
        return out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out.status);
    out.ok = out.status >= 200 && out.status < 300;
    out.permanent = !out.ok && out.status < 500 && out.status != 429;
    out.message = "HTTP " + std::to_string(out.status);
    if (!out.ok) {
        const std::string text = excerpt(response);
        if (!text.empty()) {
            out.message += ": " + text;
        }
    }
    return out;
}

}  // namespace rollguard::agent::detail
