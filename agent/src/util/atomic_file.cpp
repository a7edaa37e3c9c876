#include "util/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "hooks/hooks_internal.h"

namespace rollguard::agent {

using detail::UniqueFd;

std::string errnoText(int err) {
    return std::strerror(err);
}

bool writeAll(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

std::pair<std::string, std::string> splitDirAndName(const std::string& path) {
    const auto slash = path.rfind('/');
    if (slash == std::string::npos) {
        return {".", path};
    }
    return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

// Replaces `target` with `content`: a temp file next to it, mode and owner set before
// any byte is written, fsync, rename. The directory is fsynced by the caller.
// Returns an error text, or nullopt on success.
std::optional<std::string> replaceFile(const std::string& target, std::string_view content, mode_t mode,
                                       std::optional<Owner> owner) {
    const auto [dir, name] = splitDirAndName(target);
    std::string tmp = dir + "/." + name + ".rollguard.XXXXXX";
    UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
    if (!fd.valid()) {
        return "cannot create a temp file in " + dir + ": " + errnoText(errno);
    }
    auto fail = [&](const std::string& what) -> std::optional<std::string> {
        const int err = errno;
        fd.reset();
        ::unlink(tmp.c_str());
        return what + " " + tmp + ": " + errnoText(err);
    };
    if (::fchmod(fd.get(), mode) != 0) {
        return fail("cannot chmod");
    }
    // Only root may give a file away; an unprivileged agent keeps its own ownership.
    if (owner && ::fchown(fd.get(), owner->uid, owner->gid) != 0 && errno != EPERM) {
        return fail("cannot chown");
    }
    if (!writeAll(fd.get(), content)) {
        return fail("cannot write");
    }
    if (::fsync(fd.get()) != 0) {
        return fail("cannot fsync");
    }
    if (::close(fd.release()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        return "cannot close " + tmp + ": " + errnoText(err);
    }
    if (::rename(tmp.c_str(), target.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        return "cannot rename " + tmp + " to " + target + ": " + errnoText(err);
    }
    return std::nullopt;
}

std::optional<std::string> fsyncDirectory(const std::string& dir) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) {
        return "cannot open directory " + dir + ": " + errnoText(errno);
    }
    // Some filesystems cannot fsync a directory (EINVAL); the rename is still done.
    if (::fsync(fd.get()) != 0 && errno != EINVAL) {
        return "cannot fsync directory " + dir + ": " + errnoText(errno);
    }
    return std::nullopt;
}

std::optional<std::string> writeFileAtomically(const std::string& target, std::string_view content, mode_t mode) {
    if (auto err = replaceFile(target, content, mode)) {
        return err;
    }
    return fsyncDirectory(splitDirAndName(target).first);
}

bool readStateFile(const std::string& path, std::string& out, std::string& why) {
    why.clear();
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        if (errno != ENOENT) {
            why = "cannot read " + path + ": " + errnoText(errno);
        }
        return false;
    }
    std::ostringstream buf;
    buf << in.rdbuf();
    if (in.bad()) {
        why = "cannot read " + path + ": read error";
        return false;
    }
    out = std::move(buf).str();
    return true;
}

}  // namespace rollguard::agent
