#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rollguard/agent/positions.h"

namespace rollguard::agent {

/// One selection stream of a source (one group of a rule selection): which selection
/// (the judge's canonical key), which group, and its series.
struct StreamCheckpoint {
    std::string selection;
    std::string group;
    std::string series;  ///< Series::serialize()
};

/// One source's state at one instant: where it had read to, and its series' slots
/// holding exactly the lines before those positions (stream 0 and every selection
/// stream, taken together with the positions).
struct SourceCheckpoint {
    std::string name;
    SourcePositions positions;
    std::string series;  ///< Series::serialize() of stream 0
    std::vector<StreamCheckpoint> streams;
};

/// Everything the daemon restores after a restart (or a kill -9), so that nothing is
/// lost, nothing is counted twice, and windows are warm at once.
struct Checkpoint {
    std::vector<SourceCheckpoint> sources;

    const SourceCheckpoint* find(std::string_view name) const;
};

/// Binary encoding: a magic line, a format version, the payload and an FNV-1a checksum
/// of it, so a damaged file is refused rather than half-used.
std::string encodeCheckpoint(const Checkpoint& checkpoint);
/// nullopt with `why` set when the bytes are not a valid checkpoint.
std::optional<Checkpoint> decodeCheckpoint(std::string_view bytes, std::string& why);

/// Reads a checkpoint (CheckpointStore(path).read: the base and its journal). nullopt
/// with an empty `why` when the file does not exist; with `why` set when it exists but
/// cannot be used.
std::optional<Checkpoint> readCheckpoint(const std::string& path, std::string& why);

/// Writes encodeCheckpoint's format piece by piece into a sink, so that a checkpoint of
/// many MB is never held whole in memory: begin(n), then n times source(...) each
/// followed by its `streams` stream(...) calls, then finish(). The counts must match
/// the calls (the format states them before the items).
/// Thread-safety: none.
class CheckpointEncoder {
public:
    /// Receives the bytes in order; false stops the encoding (finish() is then false).
    using Sink = std::function<bool(std::string_view)>;
    explicit CheckpointEncoder(Sink sink);

    void begin(std::size_t sources);
    void source(std::string_view name, const SourcePositions& positions, std::string_view series,
                std::size_t streams);
    void stream(std::string_view selection, std::string_view group, std::string_view series);
    /// Writes the checksum and flushes; false when the sink failed at any point.
    bool finish();
    /// The checksum of the finished checkpoint (its last 8 bytes): a journal names its
    /// base by it.
    std::uint64_t checksum() const { return hash_; }
    /// Bytes written so far.
    std::uint64_t size() const { return size_; }

private:
    void put(std::string_view bytes);
    void flush();

    Sink sink_;
    std::string buffer_;
    std::uint64_t hash_;
    std::uint64_t size_ = 0;
    bool ok_ = true;
};

/// How a CheckpointStore::read went beyond the base.
struct CheckpointLoad {
    /// Journal records replayed onto the base.
    std::size_t journal_records = 0;
    /// Why the journal, or its end, was not used (empty: all of it was). The state used
    /// is then the last complete one: the base and the records before that point.
    std::string journal_note;
    /// Whether that end is only an incomplete last record: a write cut short by a crash,
    /// which is expected after kill -9 or a power loss, not damage.
    bool journal_torn_tail = false;
};

/// The checkpoint on disk: a base file (`path`, encodeCheckpoint's format: the format
/// every earlier version wrote and reads) and a journal beside it (`path` + ".journal").
///
/// Why a journal: most of a checkpoint does not change from one second to the next. A
/// window's sealed slots are immutable once sealed (only late event-time data re-encodes
/// one), so rewriting all of them every checkpoint_interval (4.6 MB a second with a
/// 5-minute p99 at 100k lines/s) wrote the same bytes again and again, and held them in
/// memory to do so. So each checkpoint after the first appends one record to the journal
/// (append()): the read positions of every source and, for each series that changed, what
/// changed (Series::serializeChanges: the open slots, the slots sealed or re-encoded since
/// the last record, the slots dropped, the value points changed). When the journal has
/// grown past the base (at least `journal_floor` bytes), the next checkpoint writes a new
/// base instead (compaction): the journal then costs at most as many bytes on disk as the
/// base, and about twice the changes' bytes are written per second in all.
///
/// Why this keeps every guarantee of the single file:
/// - Each record is a whole checkpoint instant: it holds every source's positions and the
///   changes of every series up to that instant, and it is written, then fdatasync'ed,
///   in one write; so the base followed by any prefix of complete records is a state in
///   which positions match the windows' data exactly, as the single file's was.
/// - Every record carries its length and an FNV-1a checksum: a record cut short by a
///   crash, or damaged, ends the replay, and the state is the last complete one (lines
///   read after it are read again from their files: nothing lost, nothing counted twice).
///   A record is checked whole before any of it is applied.
/// - The base is written as before (temp file 0600, fsync, rename, directory fsync), then
///   a new journal holding only a header that names the base by its checksum (written the
///   same way). A crash between the two leaves the old journal, which names the old base:
///   it is ignored, and the new base alone is a complete state. A base that is damaged is
///   refused with its journal, as the single file was.
/// - A failed append (disk full) may leave part of a record: the next checkpoint is then a
///   new base, never an append after it. Every daemon writes a base first, so a journal
///   ends only in records of the process that wrote its base.
/// - No file is kept open: an append opens the journal (O_APPEND), writes, syncs and
///   closes it, so the state_dir can be remounted read-only under the daemon.
/// Old single files are bases without a journal; a base written here is read by older
/// versions too (they ignore the journal and read on from the base's positions).
/// Thread-safety: none (the daemon's evaluation thread).
class CheckpointStore {
public:
    explicit CheckpointStore(std::string path, std::uint64_t journal_floor = 1U << 20);

    const std::string& path() const { return path_; }
    const std::string& journalPath() const { return journal_path_; }

    /// Reads the base and replays the journal onto it. nullopt with an empty `why` when
    /// there is no base; with `why` set when the base cannot be used (its journal is then
    /// not used either). A journal that is missing, belongs to another base or ends in a
    /// damaged or incomplete record is not an error: `load` says what was used.
    std::optional<Checkpoint> read(std::string& why, CheckpointLoad* load = nullptr) const;

    /// Whether the next checkpoint must be a base: none written by this store yet, the
    /// last write failed, or the journal has grown past max(base, journal_floor).
    bool wantsBase() const;
    /// Writes a new base (atomically, 0600) with what `encode` writes into the encoder,
    /// then an empty journal for it. Returns an error text, or nullopt.
    std::optional<std::string> writeBase(const std::function<void(CheckpointEncoder&)>& encode);
    /// Appends one record: `changes` has every source's positions, and in place of each
    /// series' bytes its Series::serializeChanges() (empty: unchanged); the streams listed
    /// are those that changed. Only after a successful writeBase and while !wantsBase().
    /// Returns an error text, or nullopt.
    std::optional<std::string> append(const Checkpoint& changes);

    /// Sizes on disk of what this store wrote last (0 before it wrote anything).
    std::uint64_t baseBytes() const { return base_bytes_; }
    std::uint64_t journalBytes() const { return journal_bytes_; }
    /// Bytes written to the base and the journal since construction.
    std::uint64_t bytesWritten() const { return bytes_written_; }
    /// Bases written since construction (the first one included).
    std::uint64_t basesWritten() const { return bases_written_; }

private:
    std::string path_;
    std::string journal_path_;
    std::uint64_t journal_floor_;
    bool base_ok_ = false;  // a base and its journal header are on disk, and appends since went well
    std::uint64_t base_bytes_ = 0;
    std::uint64_t journal_bytes_ = 0;
    std::uint64_t bytes_written_ = 0;
    std::uint64_t bases_written_ = 0;
};

}  // namespace rollguard::agent
