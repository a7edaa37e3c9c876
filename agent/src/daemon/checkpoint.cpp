#include "rollguard/agent/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <utility>

#include "hooks/hooks_internal.h"
#include "store/series_state.h"
#include "util/atomic_file.h"
#include "util/bytes.h"

namespace rollguard::agent {

namespace {

constexpr std::string_view kMagic = "rollguard checkpoint\n";
// 2 added the selection streams; 1 is still read (no streams).
constexpr std::uint64_t kFormat = 2;
// The encoder hands the sink pieces of about this size (a series' bytes go as they are).
constexpr std::size_t kFlushAt = 64 * 1024;

constexpr std::string_view kJournalMagic = "rollguard checkpoint journal\n";
constexpr std::uint64_t kJournalFormat = 1;
// Magic, format varint (1 byte), the base's checksum and the header's own checksum.
constexpr std::size_t kJournalHeaderSize = kJournalMagic.size() + 1 + 8 + 8;
constexpr std::uint64_t kFnvOffset = 1469598103934665603ULL;

std::uint64_t fnvUpdate(std::uint64_t h, std::string_view data) {
    for (const char c : data) {
        h ^= static_cast<std::uint8_t>(c);
        h *= 1099511628211ULL;
    }
    return h;
}

void writePosition(ByteWriter& w, const FilePosition& p) {
    w.bytes(p.path);
    w.varint(p.device);
    w.varint(p.inode);
    w.varint(p.offset);
    w.fixed64(p.fingerprint);
    w.varint(p.fingerprint_bytes);
}

bool readPosition(ByteReader& r, SourcePositions& out) {
    FilePosition p;
    std::string_view path;
    std::uint64_t fp_bytes = 0;
    if (!r.bytes(path) || !r.varint(p.device) || !r.varint(p.inode) || !r.varint(p.offset) ||
        !r.fixed64(p.fingerprint) || !r.varint(fp_bytes) || fp_bytes > 0xFFFFFFFFu) {
        return false;
    }
    p.path = std::string(path);
    p.fingerprint_bytes = static_cast<std::uint32_t>(fp_bytes);
    out.push_back(std::move(p));
    return true;
}

std::string journalHeader(std::uint64_t base_checksum) {
    ByteWriter w;
    w.raw(kJournalMagic);
    w.varint(kJournalFormat);
    w.fixed64(base_checksum);
    w.fixed64(fnv1a64(std::string_view(w.str()).substr(kJournalMagic.size())));
    return w.take();
}

// An upper bound of the bytes a checkpoint's sources encode to, for one allocation.
std::size_t encodedBound(const Checkpoint& checkpoint) {
    std::size_t bound = 0;
    for (const auto& source : checkpoint.sources) {
        bound += 32 + source.name.size() + source.series.size() + source.positions.size() * 64;
        for (const auto& stream : source.streams) {
            bound += 32 + stream.selection.size() + stream.group.size() + stream.series.size();
        }
    }
    return bound;
}

// One journal record: the payload's length, the payload, and the checksum of both.
std::string journalRecord(const Checkpoint& changes) {
    const std::size_t bound = 16 + encodedBound(changes);
    ByteWriter payload;
    payload.reserve(bound);
    payload.varint(changes.sources.size());
    for (const auto& source : changes.sources) {
        payload.bytes(source.name);
        payload.varint(source.positions.size());
        for (const auto& p : source.positions) {
            writePosition(payload, p);
        }
        payload.bytes(source.series);
        payload.varint(source.streams.size());
        for (const auto& stream : source.streams) {
            payload.bytes(stream.selection);
            payload.bytes(stream.group);
            payload.bytes(stream.series);
        }
    }
    ByteWriter w;
    w.reserve(payload.str().size() + 20);
    w.varint(payload.str().size());
    w.raw(payload.str());
    w.fixed64(fnv1a64(w.str()));
    return w.take();
}

// A record decoded and checked whole, so that applying it cannot fail halfway.
struct RecordSource {
    std::string name;
    SourcePositions positions;
    std::optional<detail::SeriesChanges> series;
    struct Stream {
        std::string selection;
        std::string group;
        detail::SeriesChanges changes;
    };
    std::vector<Stream> streams;
};

bool parseRecord(std::string_view payload, std::vector<RecordSource>& out) {
    ByteReader r(payload);
    std::uint64_t count = 0;
    if (!r.varint(count) || count > payload.size()) {
        return false;
    }
    for (std::uint64_t i = 0; i < count; ++i) {
        RecordSource source;
        std::string_view name;
        std::uint64_t npos = 0;
        if (!r.bytes(name) || !r.varint(npos) || npos > payload.size()) {
            return false;
        }
        source.name = std::string(name);
        for (std::uint64_t k = 0; k < npos; ++k) {
            if (!readPosition(r, source.positions)) {
                return false;
            }
        }
        std::string_view series;
        std::uint64_t nstreams = 0;
        if (!r.bytes(series) || !r.varint(nstreams) || nstreams > payload.size()) {
            return false;
        }
        if (!series.empty()) {
            source.series = detail::parseSeriesChanges(series);
            if (!source.series) {
                return false;
            }
        }
        for (std::uint64_t k = 0; k < nstreams; ++k) {
            std::string_view selection;
            std::string_view group;
            std::string_view changes;
            if (!r.bytes(selection) || !r.bytes(group) || !r.bytes(changes)) {
                return false;
            }
            auto parsed = detail::parseSeriesChanges(changes);
            if (!parsed) {
                return false;
            }
            source.streams.push_back({std::string(selection), std::string(group), std::move(*parsed)});
        }
        out.push_back(std::move(source));
    }
    return r.done();
}

// The base being replayed onto: its series decoded on first use, encoded back at the end.
class Replay {
public:
    explicit Replay(Checkpoint& cp) : cp_(cp) {}

    // Applies a parsed record whole, or returns false and changes nothing (series of the
    // base decoded meanwhile stay decoded: they encode back to the same bytes).
    bool apply(std::vector<RecordSource>&& record) {
        // First every target: decoded, and checked against its changes' settings.
        std::vector<std::pair<Key, detail::SeriesChanges*>> plan;
        for (auto& source : record) {
            if (source.series && !check(Key{source.name, true, {}, {}}, *source.series, plan)) {
                return false;
            }
            for (auto& stream : source.streams) {
                if (!check(Key{source.name, false, stream.selection, stream.group}, stream.changes, plan)) {
                    return false;
                }
            }
        }
        // Then the changes, which cannot fail.
        for (auto& source : record) {
            sourceFor(source.name).positions = std::move(source.positions);
        }
        for (auto& [key, changes] : plan) {
            auto [it, added] = images_.try_emplace(key);
            if (added) {
                it->second.settings = changes->settings;  // a series the base did not hold
            }
            detail::applyChanges(it->second, std::move(*changes));
        }
        return true;
    }

    // Writes the replayed series back into the checkpoint's bytes.
    void finish() {
        for (auto& [key, series] : images_) {
            std::string bytes = detail::encodeSeries(series);
            if (key.stream0) {
                sourceFor(key.source).series = std::move(bytes);
            } else {
                streamFor(key).series = std::move(bytes);
            }
        }
        images_.clear();
    }

private:
    struct Key {
        std::string source;
        bool stream0 = true;
        std::string selection;
        std::string group;
        auto operator<=>(const Key&) const = default;
    };

    SourceCheckpoint* findSource(const std::string& name) {
        for (auto& s : cp_.sources) {
            if (s.name == name) {
                return &s;
            }
        }
        return nullptr;
    }

    SourceCheckpoint& sourceFor(const std::string& name) {
        if (SourceCheckpoint* s = findSource(name)) {
            return *s;
        }
        cp_.sources.push_back(SourceCheckpoint{name, {}, {}, {}});
        return cp_.sources.back();
    }

    StreamCheckpoint& streamFor(const Key& key) {
        auto& streams = sourceFor(key.source).streams;
        for (auto& s : streams) {
            if (s.selection == key.selection && s.group == key.group) {
                return s;
            }
        }
        streams.push_back(StreamCheckpoint{key.selection, key.group, {}});
        return streams.back();
    }

    // The base's bytes of a series; nullptr when the base does not hold it.
    const std::string* baseBytes(const Key& key) {
        SourceCheckpoint* source = findSource(key.source);
        if (source == nullptr) {
            return nullptr;
        }
        if (key.stream0) {
            return source->series.empty() ? nullptr : &source->series;
        }
        for (const auto& s : source->streams) {
            if (s.selection == key.selection && s.group == key.group) {
                return &s.series;
            }
        }
        return nullptr;
    }

    bool check(Key key, detail::SeriesChanges& changes, std::vector<std::pair<Key, detail::SeriesChanges*>>& plan) {
        auto it = images_.find(key);
        if (it == images_.end()) {
            if (const std::string* bytes = baseBytes(key)) {
                auto parsed = detail::parseSeries(*bytes);
                if (!parsed) {
                    return false;
                }
                it = images_.emplace(key, std::move(*parsed)).first;
            }
        }
        if (it != images_.end() && !detail::sameSettings(it->second.settings, changes.settings)) {
            return false;
        }
        plan.emplace_back(std::move(key), &changes);
        return true;
    }

    Checkpoint& cp_;
    std::map<Key, detail::SavedSeries> images_;
};

// Replays the journal's records onto `cp` (whose checksum is `base_checksum`).
void replayJournal(Checkpoint& cp, std::uint64_t base_checksum, std::string_view journal, CheckpointLoad& load) {
    if (journal.size() < kJournalHeaderSize || journal.substr(0, kJournalMagic.size()) != kJournalMagic) {
        load.journal_note = "not a rollguard checkpoint journal; ignored";
        return;
    }
    ByteReader header(journal.substr(kJournalMagic.size(), kJournalHeaderSize - kJournalMagic.size()));
    std::uint64_t format = 0;
    std::uint64_t names = 0;
    std::uint64_t checksum = 0;
    if (!header.varint(format) || !header.fixed64(names) || !header.fixed64(checksum) ||
        checksum != fnv1a64(journal.substr(kJournalMagic.size(), kJournalHeaderSize - kJournalMagic.size() - 8))) {
        load.journal_note = "its header is damaged; ignored";
        return;
    }
    if (format != kJournalFormat) {
        load.journal_note = "unsupported journal format; ignored";
        return;
    }
    if (names != base_checksum) {
        // A crash between a new base and its new journal, or a base written by a version
        // without journals: the base alone is the newest complete state.
        load.journal_note =
            "it names another base (an interrupted compaction, or a checkpoint written since by a version "
            "without journals); ignored";
        return;
    }
    Replay replay(cp);
    std::size_t pos = kJournalHeaderSize;
    while (pos < journal.size()) {
        ByteReader r(journal.substr(pos));
        std::uint64_t length = 0;
        const std::size_t left = journal.size() - pos;
        bool complete = r.varint(length) && length <= left;
        const std::size_t length_bytes = r.position();
        complete = complete && length_bytes + length + 8 <= left;
        if (!complete) {
            load.journal_torn_tail = true;
            load.journal_note = "its last record is incomplete (a write cut short at byte " + std::to_string(pos) +
                                " of " + std::to_string(journal.size()) + ")";
            break;
        }
        const std::string_view framed = journal.substr(pos, length_bytes + length);
        ByteReader trailer(journal.substr(pos + length_bytes + length, 8));
        std::uint64_t sum = 0;
        trailer.fixed64(sum);
        std::vector<RecordSource> record;
        if (sum != fnv1a64(framed)) {
            // The last record cut short is expected after a crash; one followed by more is damage.
            load.journal_torn_tail = pos + length_bytes + length + 8 == journal.size();
            load.journal_note = std::string(load.journal_torn_tail ? "its last record is incomplete"
                                                                   : "record " + std::to_string(load.journal_records + 1) +
                                                                         " is damaged (checksum mismatch)") +
                                " at byte " + std::to_string(pos) + " of " + std::to_string(journal.size());
            break;
        }
        if (!parseRecord(framed.substr(length_bytes), record) || !replay.apply(std::move(record))) {
            load.journal_note = "record " + std::to_string(load.journal_records + 1) + " at byte " +
                                std::to_string(pos) + " is malformed";
            break;
        }
        ++load.journal_records;
        pos += length_bytes + length + 8;
    }
    replay.finish();
}

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
    const std::size_t bound = 64 + encodedBound(checkpoint);
    std::string out;
    out.reserve(bound);  // one allocation, not a doubling chain (see Series::serialize)
    CheckpointEncoder encoder([&out](std::string_view bytes) {
        out.append(bytes);
        return true;
    });
    encoder.begin(checkpoint.sources.size());
    for (const auto& source : checkpoint.sources) {
        encoder.source(source.name, source.positions, source.series, source.streams.size());
        for (const auto& stream : source.streams) {
            encoder.stream(stream.selection, stream.group, stream.series);
        }
    }
    encoder.finish();
    return out;
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
            ok = readPosition(r, source.positions);
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
    return CheckpointStore(path).read(why);
}

// ---------------------------------------------------------------------------------------
// CheckpointEncoder

CheckpointEncoder::CheckpointEncoder(Sink sink) : sink_(std::move(sink)), hash_(kFnvOffset) {
    buffer_.reserve(kFlushAt);
}

void CheckpointEncoder::put(std::string_view bytes) {
    size_ += bytes.size();
    if (buffer_.size() + bytes.size() > kFlushAt) {
        flush();
    }
    if (bytes.size() >= kFlushAt) {
        // A series' bytes go to the sink as they are, not through the buffer.
        if (ok_) {
            ok_ = sink_(bytes);
        }
        return;
    }
    buffer_.append(bytes);
}

void CheckpointEncoder::flush() {
    if (ok_ && !buffer_.empty()) {
        ok_ = sink_(buffer_);
    }
    buffer_.clear();
}

void CheckpointEncoder::begin(std::size_t sources) {
    put(kMagic);
    ByteWriter w;
    w.varint(kFormat);
    w.varint(sources);
    hash_ = fnvUpdate(hash_, w.str());
    put(w.str());
}

void CheckpointEncoder::source(std::string_view name, const SourcePositions& positions, std::string_view series,
                               std::size_t streams) {
    ByteWriter w;
    w.bytes(name);
    w.varint(positions.size());
    for (const auto& p : positions) {
        writePosition(w, p);
    }
    w.varint(series.size());
    hash_ = fnvUpdate(fnvUpdate(hash_, w.str()), series);
    put(w.str());
    put(series);
    ByteWriter count;
    count.varint(streams);
    hash_ = fnvUpdate(hash_, count.str());
    put(count.str());
}

void CheckpointEncoder::stream(std::string_view selection, std::string_view group, std::string_view series) {
    ByteWriter w;
    w.bytes(selection);
    w.bytes(group);
    w.varint(series.size());
    hash_ = fnvUpdate(fnvUpdate(hash_, w.str()), series);
    put(w.str());
    put(series);
}

bool CheckpointEncoder::finish() {
    ByteWriter w;
    w.fixed64(hash_);
    put(w.str());
    flush();
    return ok_;
}

// ---------------------------------------------------------------------------------------
// CheckpointStore

CheckpointStore::CheckpointStore(std::string path, std::uint64_t journal_floor)
    : path_(std::move(path)), journal_path_(path_ + ".journal"), journal_floor_(journal_floor) {}

std::optional<Checkpoint> CheckpointStore::read(std::string& why, CheckpointLoad* load) const {
    CheckpointLoad ignored;
    CheckpointLoad& out = load != nullptr ? *load : ignored;
    out = CheckpointLoad{};
    std::string bytes;
    if (!readStateFile(path_, bytes, why)) {
        return std::nullopt;
    }
    auto cp = decodeCheckpoint(bytes, why);
    if (!cp) {
        why = path_ + ": " + why;
        return std::nullopt;
    }
    std::uint64_t base_checksum = 0;
    ByteReader(std::string_view(bytes).substr(bytes.size() - 8)).fixed64(base_checksum);
    std::string().swap(bytes);  // the decoded copy is what is used from here on
    std::string journal;
    std::string journal_why;
    if (!readStateFile(journal_path_, journal, journal_why)) {
        if (!journal_why.empty()) {
            out.journal_note = journal_why;
        }
        return cp;
    }
    replayJournal(*cp, base_checksum, journal, out);
    if (!out.journal_note.empty()) {
        out.journal_note = journal_path_ + ": " + out.journal_note;
    }
    return cp;
}

bool CheckpointStore::wantsBase() const {
    return !base_ok_ || journal_bytes_ - kJournalHeaderSize > std::max(base_bytes_, journal_floor_);
}

std::optional<std::string> CheckpointStore::writeBase(const std::function<void(CheckpointEncoder&)>& encode) {
    base_ok_ = false;
    std::uint64_t checksum = 0;
    std::uint64_t size = 0;
    auto err = writeFileAtomicallyWith(path_, 0600, [&](int fd) {
        int write_errno = 0;
        CheckpointEncoder encoder([&](std::string_view bytes) {
            if (!writeAll(fd, bytes)) {
                write_errno = errno;
                return false;
            }
            return true;
        });
        encode(encoder);
        const bool ok = encoder.finish();
        checksum = encoder.checksum();
        size = encoder.size();
        errno = write_errno;
        return ok;
    });
    if (err) {
        return err;
    }
    bytes_written_ += size;
    base_bytes_ = size;
    ++bases_written_;
    const std::string header = journalHeader(checksum);
    if (auto jerr = writeFileAtomically(journal_path_, header, 0600)) {
        return jerr;
    }
    bytes_written_ += header.size();
    journal_bytes_ = header.size();
    base_ok_ = true;
    return std::nullopt;
}

std::optional<std::string> CheckpointStore::append(const Checkpoint& changes) {
    if (!base_ok_) {
        return "no checkpoint base to append to";
    }
    base_ok_ = false;  // until this append is known to be complete
    const std::string record = journalRecord(changes);
    detail::UniqueFd fd(::open(journal_path_.c_str(), O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) {
        return "cannot open " + journal_path_ + ": " + errnoText(errno);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        return "cannot stat " + journal_path_ + ": " + errnoText(errno);
    }
    if (static_cast<std::uint64_t>(st.st_size) != journal_bytes_) {
        return journal_path_ + " changed under the daemon (" + std::to_string(st.st_size) + " bytes, " +
               std::to_string(journal_bytes_) + " written)";
    }
    if (!writeAll(fd.get(), record)) {
        return "cannot write " + journal_path_ + ": " + errnoText(errno);
    }
    if (::fdatasync(fd.get()) != 0) {
        return "cannot fsync " + journal_path_ + ": " + errnoText(errno);
    }
    if (::close(fd.release()) != 0) {
        return "cannot close " + journal_path_ + ": " + errnoText(errno);
    }
    journal_bytes_ += record.size();
    bytes_written_ += record.size();
    base_ok_ = true;
    return std::nullopt;
}

}  // namespace rollguard::agent
