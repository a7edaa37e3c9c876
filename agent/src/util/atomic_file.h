#pragma once
// Crash-safe file replacement, shared by the env-file hook and the checkpoint writer.

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace rollguard::agent {

struct Owner {
    uid_t uid;
    gid_t gid;
};

/// strerror(err) as a string.
std::string errnoText(int err);

/// Writes all of `data` to `fd`, retrying on EINTR and short writes.
bool writeAll(int fd, std::string_view data);

/// ("/a/b", "c") for "/a/b/c"; (".", "c") for "c".
std::pair<std::string, std::string> splitDirAndName(const std::string& path);

/// Replaces `target` with `content`: a temp file next to it, mode (and owner, when
/// given and permitted) set before any byte is written, fsync, rename over the target.
/// The directory is not fsynced (see fsyncDirectory). Returns an error text, or nullopt.
std::optional<std::string> replaceFile(const std::string& target, std::string_view content, mode_t mode,
                                       std::optional<Owner> owner = std::nullopt);

/// fsyncs a directory so a rename in it is durable. Returns an error text, or nullopt.
std::optional<std::string> fsyncDirectory(const std::string& dir);

/// replaceFile, then fsyncDirectory of its directory: after it returns nullopt, either
/// the old or the new content is on disk, whatever crash follows, never a mix.
std::optional<std::string> writeFileAtomically(const std::string& target, std::string_view content, mode_t mode);

/// Reads a whole state file into `out`. A missing file is false with an empty `why`
/// (nothing saved yet); any other failure is false with the reason in `why`.
bool readStateFile(const std::string& path, std::string& out, std::string& why);

}  // namespace rollguard::agent
