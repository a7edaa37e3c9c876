#include "rollguard/agent/checkpoint.h"

#include <cerrno>
#include <fstream>
#include <sstream>

#include "util/atomic_file.h"
#include "util/bytes.h"

namespace rollguard::agent {

namespace {

constexpr std::string_view kMagic = "rollguard checkpoint\n";
// 2 added the selection streams; 1 is still read (no streams).
constexpr std::uint64_t kFormat = 2;

}  // namespace

const SourceCheckpoint* Checkpoint::find(std::string_view name) const {
    for (const auto& s : sources) {
        if (s.name == name) {
            return &s;
        }
    }
    return nullptr;
}

std::string encodeCheckpoint(const Checkpoint& checkpoint) {
    // One buffer, reserved up front (the series dominate: hundreds of KB): magic,
    // payload and checksum are written in place, with no doubling chain and no copy of
    // the payload (see Series::serialize: the freed steps fragmented the heap).
    std::size_t bound = kMagic.size() + 32 + 8;
    for (const auto& source : checkpoint.sources) {
        bound += 32 + source.name.size() + source.series.size();
        for (const auto& p : source.positions) {
            bound += 64 + p.path.size();
        }
        for (const auto& stream : source.streams) {
            bound += 32 + stream.selection.size() + stream.group.size() + stream.series.size();
        }
    }
    ByteWriter w;
    w.reserve(bound);
    w.raw(kMagic);
    w.varint(kFormat);
    w.varint(checkpoint.sources.size());
    for (const auto& source : checkpoint.sources) {
        w.bytes(source.name);
        w.varint(source.positions.size());
        for (const auto& p : source.positions) {
            w.bytes(p.path);
            w.varint(p.device);
            w.varint(p.inode);
            w.varint(p.offset);
            w.fixed64(p.fingerprint);
            w.varint(p.fingerprint_bytes);
        }
        w.bytes(source.series);
        w.varint(source.streams.size());
        for (const auto& stream : source.streams) {
            w.bytes(stream.selection);
            w.bytes(stream.group);
            w.bytes(stream.series);
        }
    }
    const std::uint64_t checksum = fnv1a64(std::string_view(w.str()).substr(kMagic.size()));
    w.fixed64(checksum);
    return w.take();
}

std::optional<Checkpoint> decodeCheckpoint(std::string_view bytes, std::string& why) {
    if (bytes.substr(0, kMagic.size()) != kMagic || bytes.size() < kMagic.size() + 8) {
        why = "not a rollguard checkpoint";
        return std::nullopt;
    }
    const std::string_view payload = bytes.substr(kMagic.size(), bytes.size() - kMagic.size() - 8);
    ByteReader trailer(bytes.substr(bytes.size() - 8));
    std::uint64_t checksum = 0;
    if (!trailer.fixed64(checksum) || checksum != fnv1a64(payload)) {
        why = "checksum mismatch (the file is damaged)";
        return std::nullopt;
    }
    ByteReader r(payload);
    std::uint64_t format = 0;
    std::uint64_t count = 0;
    if (!r.varint(format) || format < 1 || format > kFormat) {
        why = "unsupported checkpoint format";
        return std::nullopt;
    }
    Checkpoint cp;
    bool ok = r.varint(count) && count <= payload.size();
    for (std::uint64_t i = 0; ok && i < count; ++i) {
        SourceCheckpoint source;
        std::string_view name;
        std::uint64_t npos = 0;
        ok = r.bytes(name) && r.varint(npos) && npos <= payload.size();
        source.name = std::string(name);
        for (std::uint64_t k = 0; ok && k < npos; ++k) {
            FilePosition p;
            std::string_view path;
            std::uint64_t fp_bytes = 0;
            ok = r.bytes(path) && r.varint(p.device) && r.varint(p.inode) && r.varint(p.offset) &&
                 r.fixed64(p.fingerprint) && r.varint(fp_bytes) && fp_bytes <= 0xFFFFFFFFu;
            p.path = std::string(path);
            p.fingerprint_bytes = static_cast<std::uint32_t>(fp_bytes);
            source.positions.push_back(std::move(p));
        }
        std::string_view series;
        ok = ok && r.bytes(series);
        source.series = std::string(series);
        std::uint64_t nstreams = 0;
        if (ok && format >= 2) {
            ok = r.varint(nstreams) && nstreams <= payload.size();
        }
        for (std::uint64_t k = 0; ok && k < nstreams; ++k) {
            std::string_view selection;
            std::string_view group;
            std::string_view stream_series;
            ok = r.bytes(selection) && r.bytes(group) && r.bytes(stream_series);
            source.streams.push_back(
                StreamCheckpoint{std::string(selection), std::string(group), std::string(stream_series)});
        }
        cp.sources.push_back(std::move(source));
    }
    if (!ok || !r.done()) {
        why = "truncated or malformed checkpoint";
        return std::nullopt;
    }
    return cp;
}

std::optional<Checkpoint> readCheckpoint(const std::string& path, std::string& why) {
    std::string bytes;
    if (!readStateFile(path, bytes, why)) {
        return std::nullopt;
    }
    auto cp = decodeCheckpoint(bytes, why);
    if (!cp) {
        why = path + ": " + why;
    }
    return cp;
}

}  // namespace rollguard::agent
