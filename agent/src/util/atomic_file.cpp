#include "util/atomic_file.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

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

namespace {

// Whether the effective capability set holds `cap` (capget(2); no libcap dependency).
bool hasEffectiveCapability(int cap) {
    __user_cap_header_struct header{};
    header.version = _LINUX_CAPABILITY_VERSION_3;
    header.pid = 0;
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capget, &header, data) != 0) {
        return ::geteuid() == 0;
    }
    return (data[cap / 32].effective & (1U << (cap % 32))) != 0;
}

bool inOurGroups(gid_t gid) {
    if (gid == ::getegid()) {
        return true;
    }
    const int n = ::getgroups(0, nullptr);
    if (n <= 0) {
        return false;
    }
    std::vector<gid_t> groups(static_cast<std::size_t>(n));
    const int got = ::getgroups(n, groups.data());
    return got > 0 && std::find(groups.begin(), groups.begin() + got, gid) != groups.begin() + got;
}

// "user app, uid 1234", or "uid 1234" when the name is unknown.
std::string describeUser(uid_t uid) {
    struct passwd pw {};
    struct passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
        return "user " + std::string(found->pw_name) + ", uid " + std::to_string(uid);
    }
    return "uid " + std::to_string(uid);
}

// "group app, gid 1234", or "gid 1234" when the name is unknown.
std::string describeGroup(gid_t gid) {
    struct group gr {};
    struct group* found = nullptr;
    std::vector<char> buf(16384);
    if (::getgrgid_r(gid, &gr, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
        return "group " + std::string(found->gr_name) + ", gid " + std::to_string(gid);
    }
    return "gid " + std::to_string(gid);
}

// `.<name>.rollguard.` and six random characters, as mkostemp(3) names its files.
std::string tempName(const std::string& name) {
    static constexpr char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    thread_local std::mt19937_64 random(std::random_device{}() ^
                                        static_cast<std::uint64_t>(::getpid()) << 32U ^
                                        static_cast<std::uint64_t>(
                                            std::chrono::steady_clock::now().time_since_epoch().count()));
    std::string out = "." + name + ".rollguard.";
    for (int i = 0; i < 6; ++i) {
        out += kChars[random() % (sizeof kChars - 1)];
    }
    return out;
}

}  // namespace

std::optional<std::string> ownerKeepProblem(const std::string& path, Owner owner) {
    const bool privileged = hasEffectiveCapability(CAP_CHOWN);
    const bool uid_ok = owner.uid == ::geteuid() || privileged;
    const bool gid_ok = inOurGroups(owner.gid) || privileged;
    if (uid_ok && gid_ok) {
        return std::nullopt;
    }
    std::string what;
    std::string ids;
    std::string todo;
    if (!uid_ok) {
        what = "owner";
        ids = describeUser(owner.uid);
        todo = "make rollguard's user the file's owner (chown " + std::to_string(::geteuid()) + " " + path + ")";
    }
    if (!gid_ok) {
        what += what.empty() ? "group" : " and group";
        ids += (ids.empty() ? "" : ", ") + describeGroup(owner.gid);
        todo += todo.empty() ? "give the file a group rollguard's user belongs to (or add that user to the file's "
                               "group and restart rollguard)"
                             : " and give it a group that user belongs to";
    }
    return "cannot keep the " + what + " of " + path + " (" + ids + "): rollguard runs as " +
           describeUser(::geteuid()) +
           ", without CAP_CHOWN, and the rewritten file would belong to that user, which the service reading it may "
           "not be allowed to read; " +
           todo +
           ", or grant rollguard CAP_CHOWN (AmbientCapabilities=CAP_CHOWN and CapabilityBoundingSet=CAP_CHOWN in "
           "a drop-in of its systemd unit)";
}

std::optional<std::string> replaceFileAt(int dirfd, const std::string& dir, const std::string& name,
                                         std::string_view content, mode_t mode, std::optional<Owner> owner) {
    return replaceFileAtWith(
        dirfd, dir, name, [content](int fd) { return writeAll(fd, content); }, mode, owner);
}

std::optional<std::string> replaceFileAtWith(int dirfd, const std::string& dir, const std::string& name,
                                             const std::function<bool(int fd)>& write, mode_t mode,
                                             std::optional<Owner> owner) {
    std::string tmp;
    UniqueFd fd;
    for (int attempt = 0; attempt < 100 && !fd.valid(); ++attempt) {
        tmp = tempName(name);
        fd.reset(::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!fd.valid() && errno != EEXIST) {
            break;
        }
    }
    if (!fd.valid()) {
        return "cannot create a temp file in " + dir + ": " + errnoText(errno);
    }
    const std::string tmp_path = dir + "/" + tmp;
    auto fail = [&](const std::string& what) -> std::optional<std::string> {
        const int err = errno;
        fd.reset();
        ::unlinkat(dirfd, tmp.c_str(), 0);
        return what + " " + tmp_path + ": " + errnoText(err);
    };
    // The owner first: a chown by an unprivileged process clears the set-id bits that
    // the chmod after it sets.
    if (owner && ::fchown(fd.get(), owner->uid, owner->gid) != 0) {
        const int err = errno;
        fd.reset();
        ::unlinkat(dirfd, tmp.c_str(), 0);
        const std::string target = dir + "/" + name;
        if (auto why = ownerKeepProblem(target, *owner)) {
            return *why;
        }
        return "cannot give the rewrite of " + target + " its owner " + std::to_string(owner->uid) + ":" +
               std::to_string(owner->gid) + ": " + errnoText(err) +
               "; make rollguard's user the file's owner, or grant rollguard CAP_CHOWN";
    }
    if (::fchmod(fd.get(), mode) != 0) {
        return fail("cannot chmod");
    }
    if (!write(fd.get())) {
        return fail("cannot write");
    }
    if (::fsync(fd.get()) != 0) {
        return fail("cannot fsync");
    }
    if (::close(fd.release()) != 0) {
        const int err = errno;
        ::unlinkat(dirfd, tmp.c_str(), 0);
        return "cannot close " + tmp_path + ": " + errnoText(err);
    }
    if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) {
        const int err = errno;
        ::unlinkat(dirfd, tmp.c_str(), 0);
        return "cannot rename " + tmp_path + " to " + dir + "/" + name + ": " + errnoText(err);
    }
    return std::nullopt;
}

std::optional<std::string> replaceFile(const std::string& target, std::string_view content, mode_t mode,
                                       std::optional<Owner> owner) {
    const auto [dir, name] = splitDirAndName(target);
    UniqueFd dirfd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dirfd.valid()) {
        return "cannot create a temp file in " + dir + ": " + errnoText(errno);
    }
    return replaceFileAt(dirfd.get(), dir, name, content, mode, owner);
}

std::optional<std::string> fsyncDirectoryFd(int dirfd, const std::string& dir) {
    // Some filesystems cannot fsync a directory (EINVAL); the rename is still done.
    if (::fsync(dirfd) != 0 && errno != EINVAL) {
        return "cannot fsync directory " + dir + ": " + errnoText(errno);
    }
    return std::nullopt;
}

std::optional<std::string> fsyncDirectory(const std::string& dir) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) {
        return "cannot open directory " + dir + ": " + errnoText(errno);
    }
    return fsyncDirectoryFd(fd.get(), dir);
}

std::optional<std::string> writeFileAtomically(const std::string& target, std::string_view content, mode_t mode) {
    if (auto err = replaceFile(target, content, mode)) {
        return err;
    }
    return fsyncDirectory(splitDirAndName(target).first);
}

std::optional<std::string> writeFileAtomicallyWith(const std::string& target, mode_t mode,
                                                   const std::function<bool(int fd)>& write) {
    const auto [dir, name] = splitDirAndName(target);
    UniqueFd dirfd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dirfd.valid()) {
        return "cannot create a temp file in " + dir + ": " + errnoText(errno);
    }
    if (auto err = replaceFileAtWith(dirfd.get(), dir, name, write, mode)) {
        return err;
    }
    return fsyncDirectory(dir);
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
