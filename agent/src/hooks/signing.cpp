// SHA-256 and HMAC-SHA256, written here so that signing needs no crypto library, plus
// the ids and keys derived from them.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "rollguard/agent/hooks.h"

namespace rollguard::agent {
namespace {

constexpr std::array<std::uint32_t, 64> kRoundConstants{
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

constexpr std::uint32_t rotr(std::uint32_t x, int n) {
    return (x >> n) | (x << (32 - n));
}

/// Streaming SHA-256. Not thread-safe.
class Sha256 {
public:
    void update(std::string_view data) {
        for (const char ch : data) {
            block_[fill_++] = static_cast<std::uint8_t>(ch);
            if (fill_ == block_.size()) {
                compress();
                fill_ = 0;
            }
        }
        length_bits_ += static_cast<std::uint64_t>(data.size()) * 8;
    }

    std::array<std::uint8_t, 32> finish() {
        const std::uint64_t bits = length_bits_;
        block_[fill_++] = 0x80;
        if (fill_ > 56) {
            while (fill_ < 64) {
                block_[fill_++] = 0;
            }
            compress();
            fill_ = 0;
        }
        while (fill_ < 56) {
            block_[fill_++] = 0;
        }
        for (int i = 7; i >= 0; --i) {
            block_[fill_++] = static_cast<std::uint8_t>(bits >> (8 * i));
        }
        compress();
        std::array<std::uint8_t, 32> out{};
        for (std::size_t i = 0; i < 8; ++i) {
            for (std::size_t j = 0; j < 4; ++j) {
                out[i * 4 + j] = static_cast<std::uint8_t>(state_[i] >> (24 - 8 * j));
            }
        }
        return out;
    }

private:
    void compress() {
        std::array<std::uint32_t, 64> w{};
        for (std::size_t i = 0; i < 16; ++i) {
            w[i] = (std::uint32_t{block_[i * 4]} << 24) | (std::uint32_t{block_[i * 4 + 1]} << 16) |
                   (std::uint32_t{block_[i * 4 + 2]} << 8) | std::uint32_t{block_[i * 4 + 3]};
        }
        for (std::size_t i = 16; i < 64; ++i) {
            const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        std::uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3];
        std::uint32_t e = state_[4], f = state_[5], g = state_[6], h = state_[7];
        for (std::size_t i = 0; i < 64; ++i) {
            const std::uint32_t s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
            const std::uint32_t ch = (e & f) ^ (~e & g);
            const std::uint32_t t1 = h + s1 + ch + kRoundConstants[i] + w[i];
            const std::uint32_t s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
            const std::uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
            const std::uint32_t t2 = s0 + maj;
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        state_[0] += a;
        state_[1] += b;
        state_[2] += c;
        state_[3] += d;
        state_[4] += e;
        state_[5] += f;
        state_[6] += g;
        state_[7] += h;
    }

    std::array<std::uint32_t, 8> state_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    std::array<std::uint8_t, 64> block_{};
    std::size_t fill_ = 0;
    std::uint64_t length_bits_ = 0;
};

std::string toHex(const std::uint8_t* data, std::size_t n) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(n * 2);
    for (std::size_t i = 0; i < n; ++i) {
        out += kDigits[data[i] >> 4];
        out += kDigits[data[i] & 0x0f];
    }
    return out;
}

std::string_view asChars(const std::array<std::uint8_t, 32>& d) {
    return {reinterpret_cast<const char*>(d.data()), d.size()};
}

}  // namespace

std::array<std::uint8_t, 32> sha256(std::string_view data) {
    Sha256 h;
    h.update(data);
    return h.finish();
}

std::string sha256Hex(std::string_view data) {
    const auto d = sha256(data);
    return toHex(d.data(), d.size());
}

std::string hmacSha256Hex(std::string_view key, std::string_view message) {
    constexpr std::size_t kBlock = 64;
    std::array<std::uint8_t, kBlock> k{};
    if (key.size() > kBlock) {
        const auto d = sha256(key);
        std::memcpy(k.data(), d.data(), d.size());
    } else {
        std::memcpy(k.data(), key.data(), key.size());
    }
    std::string ipad(kBlock, '\0');
    std::string opad(kBlock, '\0');
    for (std::size_t i = 0; i < kBlock; ++i) {
        ipad[i] = static_cast<char>(k[i] ^ 0x36);
        opad[i] = static_cast<char>(k[i] ^ 0x5c);
    }
    Sha256 inner;
    inner.update(ipad);
    inner.update(message);
    const auto inner_digest = inner.finish();
    Sha256 outer;
    outer.update(opad);
    outer.update(asChars(inner_digest));
    const auto d = outer.finish();
    return toHex(d.data(), d.size());
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
