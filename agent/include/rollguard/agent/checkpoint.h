#pragma once

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

/// Reads a checkpoint. nullopt with an empty `why` when the file does not exist; with
/// `why` set when it exists but cannot be used.
std::optional<Checkpoint> readCheckpoint(const std::string& path, std::string& why);

}  // namespace rollguard::agent
