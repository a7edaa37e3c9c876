#pragma once
// Little binary encoding helpers for state files: LEB128 varints, fixed little-endian
// 64-bit words, doubles by their bits, length-prefixed strings. The reader is bounds
// checked: corrupt input makes it fail, never read past the end.

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace rollguard::agent {

class ByteWriter {
public:
    void varint(std::uint64_t v) {
        while (v >= 0x80) {
            out_.push_back(static_cast<char>(v | 0x80));
            v >>= 7;
        }
        out_.push_back(static_cast<char>(v));
    }
    /// Zig-zag, so small negative numbers stay small.
    void svarint(std::int64_t v) {
        varint((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63));
    }
    void fixed64(std::uint64_t v) {
        for (int i = 0; i < 8; ++i) {
            out_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
        }
    }
    void f64(double d) { fixed64(std::bit_cast<std::uint64_t>(d)); }
    void bytes(std::string_view s) {
        varint(s.size());
        out_.append(s);
    }
    /// Reserves room for `n` bytes in all, so that writing a large encoding of a known
    /// size allocates once instead of growing by doubling (whose freed steps fragment
    /// the heap: the daemon's RSS followed the transient peak of its checkpoints).
    void reserve(std::size_t n) { out_.reserve(n); }
    /// Appends `s` as it is, without a length (a file's magic).
    void raw(std::string_view s) { out_.append(s); }
    const std::string& str() const { return out_; }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

class ByteReader {
public:
    explicit ByteReader(std::string_view in) : in_(in) {}

    bool varint(std::uint64_t& v) {
        v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (pos_ >= in_.size()) {
                return false;
            }
            const auto b = static_cast<std::uint8_t>(in_[pos_++]);
            v |= static_cast<std::uint64_t>(b & 0x7F) << shift;
            if ((b & 0x80) == 0) {
                return true;
            }
        }
        return false;
    }
    bool svarint(std::int64_t& v) {
        std::uint64_t u = 0;
        if (!varint(u)) {
            return false;
        }
        v = static_cast<std::int64_t>((u >> 1) ^ (~(u & 1) + 1));
        return true;
    }
    bool fixed64(std::uint64_t& v) {
        if (in_.size() - pos_ < 8) {
            return false;
        }
        v = 0;
        for (int i = 0; i < 8; ++i) {
            v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(in_[pos_ + static_cast<std::size_t>(i)])) << (8 * i);
        }
        pos_ += 8;
        return true;
    }
    bool f64(double& d) {
        std::uint64_t u = 0;
        if (!fixed64(u)) {
            return false;
        }
        d = std::bit_cast<double>(u);
        return true;
    }
    bool bytes(std::string_view& s) {
        std::uint64_t n = 0;
        if (!varint(n) || n > in_.size() - pos_) {
            return false;
        }
        s = in_.substr(pos_, n);
        pos_ += n;
        return true;
    }
    bool done() const { return pos_ == in_.size(); }
    /// Bytes read so far.
    std::size_t position() const { return pos_; }

private:
    std::string_view in_;
    std::size_t pos_ = 0;
};

/// FNV-1a, 64 bit: a checksum for state files.
inline std::uint64_t fnv1a64(std::string_view data) {
    std::uint64_t h = 1469598103934665603ULL;
    for (const char c : data) {
        h ^= static_cast<std::uint8_t>(c);
        h *= 1099511628211ULL;
    }
    return h;
}

}  // namespace rollguard::agent
