// Concurrent GETs on one libcurl multi handle, classified by failure kind.
#include "rollguard/agent/scraper.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <curl/curl.h>

#ifndef ROLLGUARD_VERSION
#define ROLLGUARD_VERSION "0.1"
#endif

namespace rollguard::agent {
namespace {

// Upper bound for one curl_multi_poll wait; curl shortens it to its next timer.
constexpr int kMaxPollMillis = 1000;

void initCurlOnce() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct SlistDeleter {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlHeaders = std::unique_ptr<curl_slist, SlistDeleter>;

// Rounds up so that a 0.5 ms timeout does not become curl's "no timeout" 0.
long toCurlMillis(std::chrono::nanoseconds d) {
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
    return static_cast<long>(std::clamp<std::int64_t>(ms, 1, std::numeric_limits<long>::max()));
}

bool hasLineBreak(std::string_view s) {
    return s.find_first_of("\r\n") != std::string_view::npos;
}

// One request in flight: the state its callbacks write into.
struct Transfer {
    std::uint64_t index = 0;  // the request id
    CURL* easy = nullptr;
    std::size_t max_bytes = 0;
    bool too_large = false;
    std::string body;
    CurlHeaders headers;
    char errbuf[CURL_ERROR_SIZE] = {};
};

size_t writeBody(char* data, size_t size, size_t nmemb, void* userdata) {
    auto* t = static_cast<Transfer*>(userdata);
    const size_t n = size * nmemb;
    if (t->max_bytes != 0 && n > t->max_bytes - t->body.size()) {
        t->too_large = true;
        return 0;  // a short write makes curl abort with CURLE_WRITE_ERROR
    }
    t->body.append(data, n);
    return n;
}

// Checks what curl would otherwise send blindly; "" when the request is usable.
std::string validate(const ScrapeRequest& r) {
    if (r.timeout <= std::chrono::nanoseconds::zero()) {
        return "timeout must be positive";
    }
    if (!r.bearer_token.empty() && !r.basic_user.empty()) {
        return "both a bearer token and basic auth are set";
    }
    if (hasLineBreak(r.bearer_token) || hasLineBreak(r.basic_user) || hasLineBreak(r.basic_password)) {
        return "credentials contain a line break";
    }
    for (const auto& h : r.headers) {
        if (hasLineBreak(h)) {
            return "header contains a line break";
        }
    }
    return {};
}

// Sets every option on a freshly reset easy handle; false (and t.errbuf set) on failure.
bool configure(Transfer& t, const ScrapeRequest& r) {
    CURL* c = t.easy;
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, t.errbuf);
    curl_easy_setopt(c, CURLOPT_PRIVATE, static_cast<void*>(&t));
    curl_easy_setopt(c, CURLOPT_URL, r.url.c_str());
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    // A redirect would carry the credentials to a URL nobody configured.
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    // No proxy from the environment (http_proxy etc.): a scrape goes where it is configured.
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "rollguard/" ROLLGUARD_VERSION);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, toCurlMillis(r.timeout));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, toCurlMillis(r.timeout));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, writeBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, static_cast<void*>(&t));
    if (r.accept_gzip) {
        curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "gzip");
    }

    // On failure curl_slist_append leaves the list as it was, still owned by t.headers.
    auto append = [&](const std::string& line) {
        curl_slist* head = curl_slist_append(t.headers.get(), line.c_str());
        if (head == nullptr) {
            return false;
        }
        if (!t.headers) {
            t.headers.reset(head);
        }
        return true;
    };
    for (const auto& h : r.headers) {
        if (!append(h)) {
            return false;
        }
    }
    if (!r.bearer_token.empty() && !append("Authorization: Bearer " + r.bearer_token)) {
        return false;
    }
    if (t.headers) {
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, t.headers.get());
    }
    if (!r.basic_user.empty()) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
        curl_easy_setopt(c, CURLOPT_USERNAME, r.basic_user.c_str());
        curl_easy_setopt(c, CURLOPT_PASSWORD, r.basic_password.c_str());
    }
    if (!r.ca_file.empty()) {
        curl_easy_setopt(c, CURLOPT_CAINFO, r.ca_file.c_str());
    }
    if (!r.client_cert.empty()) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, r.client_cert.c_str());
    }
    if (!r.client_key.empty()) {
        curl_easy_setopt(c, CURLOPT_SSLKEY, r.client_key.c_str());
    }
    if (r.insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    return true;
}

// Fills `out` from a finished transfer.
void complete(Transfer& t, CURLcode code, ScrapeResponse& out) {
    CURL* c = t.easy;
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    out.status = status;
    const char* ctype = nullptr;
    if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ctype) == CURLE_OK && ctype != nullptr) {
        out.content_type = ctype;
    }
    curl_off_t micros = 0;
    if (curl_easy_getinfo(c, CURLINFO_TOTAL_TIME_T, &micros) == CURLE_OK && micros > 0) {
        out.duration = std::chrono::microseconds{micros};
    }
    out.body = std::move(t.body);
    if (code != CURLE_OK) {
        if (t.too_large) {
            out.error = ScrapeErrorKind::TooLarge;
            out.message = "response over " + std::to_string(t.max_bytes) + " bytes";
        } else {
            out.error = scrapeErrorKindFromCurlCode(static_cast<int>(code));
            out.message = t.errbuf[0] != '\0' ? std::string(t.errbuf) : std::string(curl_easy_strerror(code));
        }
        return;
    }
    if (status < 200 || status > 299) {
        out.error = ScrapeErrorKind::HttpStatus;
        out.message = "HTTP " + std::to_string(status);
        return;
    }
    out.error = ScrapeErrorKind::None;
    out.message.clear();
}

}  // namespace

std::string_view toString(ScrapeErrorKind kind) {
    switch (kind) {
        case ScrapeErrorKind::None:
            return "none";
        case ScrapeErrorKind::Dns:
            return "dns";
        case ScrapeErrorKind::Connect:
            return "connect";
        case ScrapeErrorKind::Timeout:
            return "timeout";
        case ScrapeErrorKind::Tls:
            return "tls";
        case ScrapeErrorKind::HttpStatus:
            return "http_status";
        case ScrapeErrorKind::TooLarge:
            return "too_large";
        case ScrapeErrorKind::Decode:
            return "decode";
        case ScrapeErrorKind::Other:
            return "other";
    }
    return "other";
}

ScrapeErrorKind scrapeErrorKindFromCurlCode(int curl_code) {
    switch (static_cast<CURLcode>(curl_code)) {
        case CURLE_OK:
            return ScrapeErrorKind::None;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
            return ScrapeErrorKind::Dns;
        case CURLE_COULDNT_CONNECT:
            return ScrapeErrorKind::Connect;
        case CURLE_OPERATION_TIMEDOUT:
            return ScrapeErrorKind::Timeout;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ENGINE_INITFAILED:
        case CURLE_SSL_SHUTDOWN_FAILED:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CLIENTCERT:
        case CURLE_USE_SSL_FAILED:
            return ScrapeErrorKind::Tls;
        case CURLE_BAD_CONTENT_ENCODING:
            return ScrapeErrorKind::Decode;
        case CURLE_FILESIZE_EXCEEDED:
            return ScrapeErrorKind::TooLarge;
        default:
            return ScrapeErrorKind::Other;
    }
}

struct Scraper::Impl {
    CURLM* multi = nullptr;
    std::vector<CURL*> idle;  // easy handles kept for the next call
    std::uint64_t next_id = 1;
    // Transfers in flight, owned here; a Transfer's `index` is its id.
    std::vector<std::unique_ptr<Transfer>> running;
    // Completed (or refused before any I/O) and not yet returned by poll().
    std::vector<std::pair<std::uint64_t, ScrapeResponse>> done;

    CURL* take() {
        if (!idle.empty()) {
            CURL* c = idle.back();
            idle.pop_back();
            return c;
        }
        return curl_easy_init();
    }

    // Reset at once so the pooled handle holds no pointer into a finished Transfer; the
    // reset keeps its DNS cache, and the connections live on in the multi handle.
    void giveBack(CURL* c) {
        curl_easy_reset(c);
        idle.push_back(c);
    }

    void fail(std::uint64_t id, std::string message) {
        ScrapeResponse r;
        r.message = std::move(message);
        done.emplace_back(id, std::move(r));
    }

    void finish(Transfer* t, CURLcode code) {
        ScrapeResponse r;
        complete(*t, code, r);
        curl_multi_remove_handle(multi, t->easy);
        giveBack(t->easy);
        t->easy = nullptr;
        done.emplace_back(t->index, std::move(r));
        running.erase(std::find_if(running.begin(), running.end(),
                                   [t](const std::unique_ptr<Transfer>& p) { return p.get() == t; }));
    }

    // Moves every finished transfer to `done`; false when the multi handle broke.
    bool drive() {
        int still = 0;
        const CURLMcode mc = curl_multi_perform(multi, &still);
        int queued = 0;
        while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }
            void* priv = nullptr;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            finish(static_cast<Transfer*>(priv), msg->data.result);
        }
        if (mc != CURLM_OK) {
            // The multi handle itself broke: fail what is left rather than spin.
            while (!running.empty()) {
                Transfer* t = running.back().get();
                curl_multi_remove_handle(multi, t->easy);
                giveBack(t->easy);
                fail(t->index, curl_multi_strerror(mc));
                running.pop_back();
            }
            return false;
        }
        return true;
    }
};

Scraper::Scraper() : impl_(std::make_unique<Impl>()) {
    initCurlOnce();
    impl_->multi = curl_multi_init();
}

Scraper::~Scraper() {
    for (auto& t : impl_->running) {
        curl_multi_remove_handle(impl_->multi, t->easy);
        curl_easy_cleanup(t->easy);
    }
    for (CURL* c : impl_->idle) {
        curl_easy_cleanup(c);
    }
    if (impl_->multi != nullptr) {
        curl_multi_cleanup(impl_->multi);
    }
}

std::uint64_t Scraper::start(const ScrapeRequest& req) {
    const std::uint64_t id = impl_->next_id++;
    if (impl_->multi == nullptr) {
        impl_->fail(id, "curl_multi_init failed");
        return id;
    }
    if (std::string why = validate(req); !why.empty()) {
        impl_->fail(id, std::move(why));
        return id;
    }
    auto t = std::make_unique<Transfer>();
    t->index = id;
    t->max_bytes = req.max_bytes;
    t->easy = impl_->take();
    if (t->easy == nullptr) {
        impl_->fail(id, "curl_easy_init failed");
        return id;
    }
    if (!configure(*t, req)) {
        impl_->giveBack(t->easy);
        impl_->fail(id, "out of memory building request headers");
        return id;
    }
    if (const CURLMcode mc = curl_multi_add_handle(impl_->multi, t->easy); mc != CURLM_OK) {
        impl_->giveBack(t->easy);
        impl_->fail(id, curl_multi_strerror(mc));
        return id;
    }
    impl_->running.push_back(std::move(t));
    return id;
}

std::vector<std::pair<std::uint64_t, ScrapeResponse>> Scraper::poll(std::chrono::nanoseconds wait) {
    if (impl_->done.empty() && !impl_->running.empty() && impl_->drive() && impl_->done.empty()) {
        const auto ms = std::chrono::ceil<std::chrono::milliseconds>(std::max(wait, std::chrono::nanoseconds::zero()));
        const int timeout = static_cast<int>(std::min<std::int64_t>(ms.count(), kMaxPollMillis));
        if (curl_multi_poll(impl_->multi, nullptr, 0, timeout, nullptr) == CURLM_OK) {
            impl_->drive();
        }
    } else if (impl_->running.empty() && impl_->done.empty() && wait > std::chrono::nanoseconds::zero() &&
               impl_->multi != nullptr) {
        // Nothing to drive: still wait (wakeup() ends it early), so a caller's loop sleeps.
        const auto ms = std::chrono::ceil<std::chrono::milliseconds>(wait);
        curl_multi_poll(impl_->multi, nullptr, 0, static_cast<int>(std::min<std::int64_t>(ms.count(), kMaxPollMillis)),
                        nullptr);
    }
    return std::exchange(impl_->done, {});
}

std::size_t Scraper::inFlight() const {
    return impl_->running.size() + impl_->done.size();
}

void Scraper::wakeup() {
    if (impl_->multi != nullptr) {
        curl_multi_wakeup(impl_->multi);
    }
}

std::vector<ScrapeResponse> Scraper::fetchAll(const std::vector<ScrapeRequest>& requests) {
    std::vector<ScrapeResponse> out(requests.size());
    std::vector<std::pair<std::uint64_t, std::size_t>> ids;  // id -> index in `out`
    ids.reserve(requests.size());
    for (std::size_t i = 0; i < requests.size(); ++i) {
        ids.emplace_back(start(requests[i]), i);
    }
    std::size_t pending = ids.size();
    while (pending > 0) {
        for (auto& [id, response] : poll(std::chrono::milliseconds{kMaxPollMillis})) {
            const auto it = std::find_if(ids.begin(), ids.end(), [id = id](const auto& p) { return p.first == id; });
            if (it != ids.end()) {
                out[it->second] = std::move(response);
                --pending;
            }
        }
    }
    return out;
}

std::chrono::nanoseconds jitteredOffset(std::string_view target_key, std::chrono::nanoseconds interval) {
    if (interval <= std::chrono::nanoseconds::zero()) {
        return std::chrono::nanoseconds::zero();
    }
    std::uint64_t h = 14695981039346656037ull;  // FNV-1a 64-bit offset basis
    for (const unsigned char ch : target_key) {
        h ^= ch;
        h *= 1099511628211ull;  // FNV prime
    }
    return std::chrono::nanoseconds{static_cast<std::int64_t>(h % static_cast<std::uint64_t>(interval.count()))};
}

}  // namespace rollguard::agent
