#pragma once
// Crash-safe file replacement, shared by the env-file hook and the checkpoint writer.

#include <sys/types.h>

#include <functional>
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

/// Why a file owned by `owner` could not be replaced by one that keeps that owner and
/// group, or nullopt when it can. A rename cannot keep an owner: the replacement is a new
/// file, created by this process (so owned by its effective uid and gid), that must be
/// given the original's owner and group with fchown(2) before it is renamed in. That
/// works when the uid is the effective uid or the process has CAP_CHOWN, and when the gid
/// is the effective gid, one of the supplementary groups, or the process has CAP_CHOWN.
/// The one rule both the file hooks' refusal and their preflight apply (the decision:
/// refuse rather than leave a file the service can no longer read). The text
/// is one sentence naming `path`, the owner and rollguard's user, and what to do.
std::optional<std::string> ownerKeepProblem(const std::string& path, Owner owner);

/// Replaces `name` in the directory open as `dirfd` (`dir` names it in messages) with
/// `content`: a temp file `.<name>.rollguard.XXXXXX` created in the same directory with
/// openat(O_CREAT|O_EXCL|O_NOFOLLOW) at mode 0600, given `owner` (when set: fchown, and a
/// failure fails the whole replacement, temp file removed, `name` untouched) and then
/// `mode` before any byte is written, fsync, renameat over `name`. renameat replaces the
/// directory entry itself: a symlink at `name` is replaced, never followed. The directory
/// is not fsynced (see fsyncDirectoryFd). Returns an error text, or nullopt.
std::optional<std::string> replaceFileAt(int dirfd, const std::string& dir, const std::string& name,
                                         std::string_view content, mode_t mode,
                                         std::optional<Owner> owner = std::nullopt);

/// replaceFileAt with the content written by `write` (to the temp file's descriptor;
/// false with errno set when it failed), so a large file need not be held in memory.
std::optional<std::string> replaceFileAtWith(int dirfd, const std::string& dir, const std::string& name,
                                             const std::function<bool(int fd)>& write, mode_t mode,
                                             std::optional<Owner> owner = std::nullopt);

/// replaceFileAt on the directory of `target` (opened with O_PATH: no read permission on
/// it is needed). Returns an error text, or nullopt.
std::optional<std::string> replaceFile(const std::string& target, std::string_view content, mode_t mode,
                                       std::optional<Owner> owner = std::nullopt);

/// fsyncs the directory open (O_RDONLY) as `dirfd` so a rename in it is durable; `dir`
/// names it in messages. Returns an error text, or nullopt.
std::optional<std::string> fsyncDirectoryFd(int dirfd, const std::string& dir);

/// fsyncs a directory so a rename in it is durable. Returns an error text, or nullopt.
std::optional<std::string> fsyncDirectory(const std::string& dir);

/// replaceFile, then fsyncDirectory of its directory: after it returns nullopt, either
/// the old or the new content is on disk, whatever crash follows, never a mix.
std::optional<std::string> writeFileAtomically(const std::string& target, std::string_view content, mode_t mode);

/// writeFileAtomically with the content written by `write` (see replaceFileAtWith).
std::optional<std::string> writeFileAtomicallyWith(const std::string& target, mode_t mode,
                                                   const std::function<bool(int fd)>& write);

/// Reads a whole state file into `out`. A missing file is false with an empty `why`
/// (nothing saved yet); any other failure is false with the reason in `why`.
bool readStateFile(const std::string& path, std::string& out, std::string& why);

}  // namespace rollguard::agent
