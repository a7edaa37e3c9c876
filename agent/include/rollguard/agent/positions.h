#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rollguard::agent {

/// Where a source has read to in one file: enough to resume exactly after a restart.
/// `offset` is the end of the last complete line consumed (a partial last line is read
/// again). The identity is device + inode + a fingerprint: a hash of the
/// `fingerprint_bytes` bytes just before `offset` (or of the file's first bytes when
/// offset is small), so a file replaced while we were down, or an inode reused, is
/// detected and read from its start instead of resumed at a stale offset.
struct FilePosition {
    std::string path;
    std::uint64_t device = 0;
    std::uint64_t inode = 0;
    std::uint64_t offset = 0;
    std::uint64_t fingerprint = 0;
    std::uint32_t fingerprint_bytes = 0;

    bool operator==(const FilePosition&) const = default;
};

using SourcePositions = std::vector<FilePosition>;

}  // namespace rollguard::agent
