// SHA-256 and HMAC-SHA256 from OpenSSL's libcrypto (FIPS 180-4, RFC 2104), a
// constant-time secret comparison, and the ids and keys derived from them.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "rollguard/agent/hooks.h"

namespace rollguard::agent {
namespace {

std::string toHex(const unsigned char* data, std::size_t n) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(n * 2);
    for (std::size_t i = 0; i < n; ++i) {
        out += kDigits[data[i] >> 4];
        out += kDigits[data[i] & 0x0f];
    }
    return out;
}

/// HMAC-SHA256 of `message` under `key`, raw. OpenSSL's one-shot HMAC() fails only on
/// allocation failure; then there is no signature to send, so that is fatal.
std::array<unsigned char, SHA256_DIGEST_LENGTH> hmacSha256(std::string_view key, std::string_view message) {
    std::array<unsigned char, SHA256_DIGEST_LENGTH> out{};
    unsigned int len = 0;
    // A zero-length key must still be a valid pointer for HMAC().
    static constexpr unsigned char kEmpty = 0;
    const void* key_data = key.empty() ? static_cast<const void*>(&kEmpty) : key.data();
    if (HMAC(EVP_sha256(), key_data, static_cast<int>(key.size()),
             reinterpret_cast<const unsigned char*>(message.data()), message.size(), out.data(), &len) == nullptr ||
        len != out.size()) {
        throw std::runtime_error("HMAC-SHA256 failed (OpenSSL)");
    }
    return out;
}

}  // namespace

std::array<std::uint8_t, 32> sha256(std::string_view data) {
    static_assert(SHA256_DIGEST_LENGTH == 32);
    std::array<std::uint8_t, 32> out{};
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 || len != out.size()) {
        throw std::runtime_error("SHA-256 failed (OpenSSL)");
    }
    return out;
}

std::string sha256Hex(std::string_view data) {
    const auto d = sha256(data);
    return toHex(d.data(), d.size());
}

std::string hmacSha256Hex(std::string_view key, std::string_view message) {
    const auto d = hmacSha256(key, message);
    return toHex(d.data(), d.size());
}

bool secretEquals(std::string_view a, std::string_view b) {
    // CRYPTO_memcmp is constant-time only over equal lengths; comparing the strings
    // themselves would first have to branch on the length and leak it. So compare the
    // HMACs of both under a key drawn once per process: fixed-size, unpredictable to the
    // caller, equal exactly when the strings are (up to a SHA-256 collision).
    static const std::array<unsigned char, 32> kKey = [] {
        std::array<unsigned char, 32> k{};
        if (RAND_bytes(k.data(), static_cast<int>(k.size())) != 1) {
            throw std::runtime_error("RAND_bytes failed (OpenSSL)");
        }
        return k;
    }();
    const std::string_view key(reinterpret_cast<const char*>(kKey.data()), kKey.size());
    const auto ha = hmacSha256(key, a);
    const auto hb = hmacSha256(key, b);
    return CRYPTO_memcmp(ha.data(), hb.data(), ha.size()) == 0;
}

std::string webhookSignature(std::string_view secret, std::int64_t unix_seconds, std::string_view body) {
    std::string signed_text = std::to_string(unix_seconds);
    signed_text += '.';
    signed_text.append(body);
    return "sha256=" + hmacSha256Hex(secret, signed_text);
}

std::string incidentId(const BreachEvent& event) {
    if (!event.incident_id.empty()) {
        return event.incident_id;
    }
    const auto since_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(event.since.time_since_epoch()).count();
    return sha256Hex(event.rule + "\n" + event.group + "\n" + std::to_string(since_ns)).substr(0, 16);
}

std::string idempotencyKey(const BreachEvent& event, std::string_view hook_name) {
    std::string text = incidentId(event);
    text += '\n';
    text += event.state;
    text += '\n';
    text.append(hook_name);
    return sha256Hex(text);
}

std::chrono::nanoseconds backoffDelay(int retry, std::chrono::nanoseconds base, std::chrono::nanoseconds cap,
                                      double random01) {
    if (base.count() <= 0 || cap.count() <= 0) {
        return std::chrono::nanoseconds{0};
    }
    std::chrono::nanoseconds ceiling = base;
    for (int i = 0; i < retry && ceiling < cap; ++i) {
        ceiling *= 2;  // cannot overflow: stops doubling once past cap
    }
    ceiling = std::min(ceiling, cap);
    const double r = random01 < 0.0 ? 0.0 : (random01 >= 1.0 ? 1.0 : random01);
    return std::chrono::nanoseconds{static_cast<std::int64_t>(static_cast<double>(ceiling.count()) * r)};
}

}  // namespace rollguard::agent
