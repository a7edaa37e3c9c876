// editFileInPlace: the locked, atomic, backed-up rewrite shared by the file-editing hooks
// (env_file, json_file, toml_file). Each hook only computes the new text.
#include <charconv>
#include <cerrno>
#include <functional>
#include <memory>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hooks/hooks_internal.h"
#include "util/atomic_file.h"

namespace rollguard::agent::detail {
namespace {

// Reads the whole file behind `fd` from its current offset.
bool readAll(int fd, std::string& out) {
    char buf[64 * 1024];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        if (n == 0) {
            return true;
        }
        out.append(buf, static_cast<std::size_t>(n));
    }
}

// Waits for an exclusive advisory lock, polling so that the hook timeout bounds it.
bool lockWithTimeout(int fd, std::chrono::nanoseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
            return true;
        }
        if (errno != EWOULDBLOCK && errno != EINTR) {
            return false;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
}

}  // namespace

namespace {

// The file a hook edits, located: its directory open (O_RDONLY, so it can be fsynced) and
// the name in it, everything after this opened relative to `dir` with O_NOFOLLOW.
struct Target {
    UniqueFd dir;
    std::string dir_path;  // for messages: resolved
    std::string name;
    std::string path;      // dir_path + "/" + name, for messages
};

std::string joinPath(const std::string& dir, const std::string& name) {
    return dir == "/" ? "/" + name : dir + "/" + name;
}

std::string resolvedOr(const std::string& path) {
    if (char* real = ::realpath(path.c_str(), nullptr)) {
        std::string out = real;
        std::free(real);
        return out;
    }
    return path;
}

std::optional<std::string> openDirectory(const std::string& dir, const std::string& name, Target& out) {
    out.dir.reset(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!out.dir.valid()) {
        return "cannot open directory " + dir + ": " + errnoText(errno);
    }
    out.dir_path = resolvedOr(dir);
    out.name = name;
    out.path = joinPath(out.dir_path, name);
    return std::nullopt;
}

// Locates config.path. A symlink there is refused unless config.follow_symlinks; with
// it the link is resolved once (realpath; a dangling link: its target's directory) and
// the target's directory opened, so a link swapped in later is never followed.
std::optional<std::string> locateTarget(const HookConfig& config, Target& out) {
    const auto [dir, name] = splitDirAndName(config.path);
    if (name.empty() || name == "." || name == "..") {
        return config.path + " is not a file path";
    }
    if (auto err = openDirectory(dir, name, out)) {
        return err;
    }
    struct stat lst {};
    if (::fstatat(out.dir.get(), name.c_str(), &lst, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISLNK(lst.st_mode)) {
        return std::nullopt;
    }
    std::string link(4096, '\0');
    const ssize_t n = ::readlinkat(out.dir.get(), name.c_str(), link.data(), link.size());
    if (n < 0) {
        return "cannot read symbolic link " + config.path + ": " + errnoText(errno);
    }
    link.resize(static_cast<std::size_t>(n));
    if (!config.follow_symlinks) {
        return config.path + " is a symbolic link to " + link + "; set follow_symlinks = true to edit its target";
    }
    std::string resolved;
    if (char* real = ::realpath(config.path.c_str(), nullptr)) {
        resolved = real;
        std::free(real);
    } else if (errno == ENOENT) {
        resolved = link.front() == '/' ? link : joinPath(dir, link);  // dangling: create may make it
    } else {
        return "cannot resolve symbolic link " + config.path + ": " + errnoText(errno);
    }
    const auto [target_dir, target_name] = splitDirAndName(resolved);
    if (target_name.empty() || target_name == "." || target_name == "..") {
        return config.path + " is a symbolic link to " + link + ", which is not a file path";
    }
    return openDirectory(target_dir, target_name, out);
}

// Reads the whole file behind `fd` from offset 0.
bool readWhole(int fd, std::string& out) {
    if (::lseek(fd, 0, SEEK_SET) != 0) {
        return false;
    }
    return readAll(fd, out);
}

}  // namespace

TextEdit editText(int fd, bool exists, const TextEditor& edit, const std::string& path, std::string& old_text) {
    old_text.clear();
    if (exists && !readWhole(fd, old_text)) {
        TextEdit out;
        out.error = "cannot read " + path + ": " + errnoText(errno);
        return out;
    }
    return edit(old_text, exists, path);
}

HookResult editFileInPlace(const HookConfig& config, const TextEditor& edit, std::string_view change) {
    const auto start = std::chrono::steady_clock::now();
    auto finish = [start](bool ok, std::string message) { return finishedResult(start, ok, std::move(message)); };
    if (config.path.empty()) {
        return finish(false, "no path configured");
    }
    Target target;
    if (auto err = locateTarget(config, target)) {
        return finish(false, std::move(*err));
    }
    const std::string& path = target.path;
    const int dirfd = target.dir.get();

    // Lock the file, then make sure it is still the file at `name` in the directory: a
    // concurrent writer may have renamed a new version in while we waited. O_NOFOLLOW: a
    // symlink swapped in at `name` fails the open instead of redirecting the write.
    UniqueFd fd;
    struct stat st {};
    bool exists = false;
    for (int attempt = 0; attempt < 5 && !exists; ++attempt) {
        struct stat lst {};
        if (::fstatat(dirfd, target.name.c_str(), &lst, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(lst.st_mode) &&
            !S_ISLNK(lst.st_mode)) {
            return finish(false, path + " is not a regular file");
        }
        // Read-only: the file is replaced by a rename, never written through this
        // descriptor, which only reads it and holds the lock.
        fd.reset(::openat(dirfd, target.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
        if (!fd.valid()) {
            if (errno == ENOENT) {
                break;
            }
            if (errno == ELOOP) {
                return finish(false, path + " is a symbolic link (replaced by one after it was located); "
                                            "not following it: nothing changed");
            }
            if (errno == EISDIR) {
                return finish(false, path + " is not a regular file");
            }
            return finish(false, "cannot open " + path + ": " + errnoText(errno));
        }
        if (::fstat(fd.get(), &st) != 0) {
            return finish(false, "cannot stat " + path + ": " + errnoText(errno));
        }
        if (!S_ISREG(st.st_mode)) {
            return finish(false, path + " is not a regular file");
        }
        if (!lockWithTimeout(fd.get(), config.timeout)) {
            return finish(false, "cannot lock " + path + " within " + formatSeconds(config.timeout));
        }
        struct stat now {};
        exists = ::fstatat(dirfd, target.name.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0 &&
                 now.st_dev == st.st_dev && now.st_ino == st.st_ino;
    }
    if (!exists && fd.valid()) {
        return finish(false, path + " keeps being replaced; gave up");
    }
    if (!exists && !config.create) {
        return finish(false, path + " does not exist (set create = true to create it)");
    }

    std::string old_text;
    TextEdit result = editText(fd.get(), exists, edit, path, old_text);
    if (result.error) {
        return finish(false, std::move(*result.error));
    }
    if (!result.changed) {
        return finish(true, "already up to date: " + path);
    }

    const mode_t mode = exists ? (st.st_mode & 07777) : 0600;
    std::optional<Owner> owner;
    if (exists) {
        owner = Owner{st.st_uid, st.st_gid};
        // Refuse rather than leave the file to rollguard's user, which the service may not be able to read.
        if (auto why = ownerKeepProblem(path, *owner)) {
            return finish(false, *why + " (nothing changed)");
        }
    }
    if (exists && config.backup) {
        if (auto err = replaceFileAt(dirfd, target.dir_path, target.name + ".rollguard.bak", old_text, mode,
                                     owner)) {
            return finish(false, "backup failed: " + *err);
        }
    }
    if (auto err = replaceFileAt(dirfd, target.dir_path, target.name, result.text, mode, owner)) {
        return finish(false, *err);
    }
    if (auto err = fsyncDirectoryFd(dirfd, target.dir_path)) {
        // The new content is in place; only its durability across a crash is in doubt.
        return finish(false, *err);
    }
    return finish(true, (exists ? "" : "created; ") + std::string(change) + " in " + path);
}

std::optional<std::string> fillRolloutPercent(const HookConfig& config, const BreachEvent& event, HookConfig& out) {
    if (!event.rollout_percent) {
        return std::string(kRolloutPercentPlaceholder) + " is only set for [rollout] events: nothing changed";
    }
    const std::string percent = std::to_string(*event.rollout_percent);
    const auto fill = [&percent](std::string& text) {
        for (auto at = text.find(kRolloutPercentPlaceholder); at != std::string::npos;
             at = text.find(kRolloutPercentPlaceholder, at + percent.size())) {
            text.replace(at, kRolloutPercentPlaceholder.size(), percent);
        }
    };
    HookConfig filled = config;
    for (auto& [name, value] : filled.set) {
        fill(value);
    }
    for (auto& setting : filled.flag_set) {
        if (auto* text = std::get_if<std::string>(&setting.value)) {
            if (*text == kRolloutPercentPlaceholder) {
                setting.value = static_cast<std::int64_t>(*event.rollout_percent);
            } else {
                fill(*text);
            }
        }
    }
    for (auto& [name, value] : filled.env) {
        fill(value);
    }
    for (std::size_t i = 1; i < filled.command.size(); ++i) {
        fill(filled.command[i]);
    }
    out = std::move(filled);
    return std::nullopt;
}

namespace {

class FileHook final : public Hook {
public:
    using Apply = std::function<HookResult(const HookConfig&, const BreachEvent&)>;
    FileHook(HookConfig config, Apply apply) : config_(std::move(config)), apply_(std::move(apply)) {}
    const std::string& name() const override { return config_.name; }
    HookType type() const override { return config_.type; }
    HookResult run(const BreachEvent& event) override {
        if (!usesRolloutPercent(config_)) {
            return apply_(config_, event);
        }
        HookConfig filled;
        if (auto error = fillRolloutPercent(config_, event, filled)) {
            return finishedResult(std::chrono::steady_clock::now(), false, std::move(*error));
        }
        return apply_(filled, event);
    }

private:
    HookConfig config_;
    Apply apply_;
};

}  // namespace

std::unique_ptr<Hook> makeFileHook(const HookConfig& config, HookResult (*apply)(const HookConfig&)) {
    return std::make_unique<FileHook>(config, [apply](const HookConfig& c, const BreachEvent&) { return apply(c); });
}

std::unique_ptr<Hook> makeFileHook(const HookConfig& config,
                                   HookResult (*apply)(const HookConfig&, const BreachEvent&)) {
    return std::make_unique<FileHook>(config, apply);
}

std::optional<std::size_t> pointerArrayIndex(std::string_view segment) {
    if (segment.empty() || (segment.size() > 1 && segment[0] == '0')) {
        return std::nullopt;
    }
    std::size_t i = 0;
    const auto [end, ec] = std::from_chars(segment.data(), segment.data() + segment.size(), i);
    if (ec != std::errc{} || end != segment.data() + segment.size()) {
        return std::nullopt;
    }
    return i;
}

std::string pointerPrefix(const std::vector<std::string>& segments, std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n; ++i) {
        out += '/';
        for (const char c : segments[i]) {
            if (c == '~') {
                out += "~0";
            } else if (c == '/') {
                out += "~1";
            } else {
                out += c;
            }
        }
    }
    return out;
}

std::string pointerPlaceName(const std::vector<std::string>& segments, std::size_t n) {
    return n == 0 ? std::string("the document") : pointerPrefix(segments, n);
}

}  // namespace rollguard::agent::detail

namespace rollguard::agent::detail {

FileEdit fileEditFor(const HookConfig& config, const BreachEvent& event) {
    switch (config.type) {
        case HookType::EnvFile:
            return envFileEdit(config);
        case HookType::JsonFile:
            return jsonFileEdit(config, event);
        case HookType::TomlFile:
            return tomlFileEdit(config);
        case HookType::Webhook:
        case HookType::Script:
        case HookType::Alertmanager:
            break;
    }
    FileEdit none;
    none.error = std::string("a ") + std::string(toString(config.type)) + " hook edits no file";
    return none;
}

std::vector<std::string> preflightFileHook(const HookConfig& config) {
    std::vector<std::string> problems;
    if (config.path.empty()) {
        return {"no path is configured; set path to the file to edit"};
    }
    const std::string us = "rollguard's user (uid " + std::to_string(::geteuid()) + ")";
    Target target;
    if (auto err = locateTarget(config, target)) {
        struct stat dst {};
        if (err->rfind("cannot open directory ", 0) == 0 &&
            ::stat(splitDirAndName(config.path).first.c_str(), &dst) != 0 && errno == ENOENT) {
            return {"the directory of " + config.path + " does not exist; create it or correct path"};
        }
        return {*err + (err->find("follow_symlinks") == std::string::npos ? "; fix path or its permissions" : "")};
    }
    const std::string& path = target.path;
    const int dirfd = target.dir.get();
    if (::faccessat(dirfd, ".", W_OK | X_OK, AT_EACCESS) != 0) {
        problems.push_back(target.dir_path + " is not writable and searchable by " + us +
                           ", and the hook writes a temp file there and renames it over " + target.name +
                           "; give that user write and search permission on the directory");
    }
    struct stat st {};
    if (::fstatat(dirfd, target.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT) {
            problems.push_back("cannot stat " + path + ": " + errnoText(errno) + "; fix its directory's permissions");
        } else if (!config.create) {
            problems.push_back(path + " does not exist; create it or set create = true");
        }
        return problems;
    }
    if (S_ISLNK(st.st_mode)) {
        // A dangling link's target that is itself a link: the run would refuse it.
        problems.push_back(path + " is a symbolic link too; point path (or the link) at the file itself");
        return problems;
    }
    if (!S_ISREG(st.st_mode)) {
        problems.push_back(path + " is not a regular file; point path at the file to edit");
        return problems;
    }
    // Read permission only: the file is replaced by a rename (the directory's write
    // permission, checked above), never written in place.
    if (::faccessat(dirfd, target.name.c_str(), R_OK, AT_EACCESS) != 0) {
        problems.push_back(path + " is not readable by " + us + " (" + errnoText(errno) +
                           "); give that user read permission on it");
    }
    if (auto why = ownerKeepProblem(path, Owner{st.st_uid, st.st_gid})) {
        problems.push_back(std::move(*why));
    }
    if (config.backup) {
        const std::string backup = target.name + ".rollguard.bak";
        struct stat bst {};
        if (::fstatat(dirfd, backup.c_str(), &bst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(bst.st_mode)) {
            problems.push_back(joinPath(target.dir_path, backup) +
                               " is a directory, which the backup cannot replace; remove it or set backup = false");
        }
    }
    // The edit itself, on the current text, without writing: content the hook would refuse.
    UniqueFd fd(::openat(dirfd, target.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd.valid()) {
        return problems;  // reported above as not readable
    }
    HookConfig filled = config;
    if (usesRolloutPercent(config)) {
        BreachEvent sample;
        sample.rollout_percent = 0;
        fillRolloutPercent(config, sample, filled);
    }
    const FileEdit planned = fileEditFor(filled, BreachEvent{});
    if (planned.error) {
        problems.push_back(*planned.error + "; correct the hook's configuration");
        return problems;
    }
    std::string old_text;
    const TextEdit result = editText(fd.get(), true, planned.edit, path, old_text);
    if (result.error) {
        problems.push_back("the current content cannot be edited: " + *result.error + "; fix the file");
    }
    return problems;
}

}  // namespace rollguard::agent::detail
