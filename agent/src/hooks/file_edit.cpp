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

HookResult editFileInPlace(const HookConfig& config, const TextEditor& edit, std::string_view change) {
    const auto start = std::chrono::steady_clock::now();
    auto finish = [start](bool ok, std::string message) { return finishedResult(start, ok, std::move(message)); };
    if (config.path.empty()) {
        return finish(false, "no path configured");
    }

    // Edit the file a symlink points to so that the link itself stays a link.
    std::string path = config.path;
    if (char* real = ::realpath(config.path.c_str(), nullptr)) {
        path = real;
        std::free(real);
    }

    // Lock the file, then make sure it is still the file at `path`: a concurrent writer
    // may have renamed a new version in while we waited.
    UniqueFd fd;
    struct stat st {};
    bool exists = false;
    for (int attempt = 0; attempt < 5 && !exists; ++attempt) {
        fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
        if (!fd.valid()) {
            if (errno == ENOENT) {
                break;
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
        exists = ::stat(path.c_str(), &now) == 0 && now.st_dev == st.st_dev && now.st_ino == st.st_ino;
    }
    if (!exists && fd.valid()) {
        return finish(false, path + " keeps being replaced; gave up");
    }
    if (!exists && !config.create) {
        return finish(false, path + " does not exist (set create = true to create it)");
    }

    std::string old_text;
    if (exists && !readAll(fd.get(), old_text)) {
        return finish(false, "cannot read " + path + ": " + errnoText(errno));
    }
    TextEdit result = edit(old_text, exists, path);
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
    }
    if (exists && config.backup) {
        if (auto err = replaceFile(path + ".rollguard.bak", old_text, mode, owner)) {
            return finish(false, "backup failed: " + *err);
        }
    }
    if (auto err = replaceFile(path, result.text, mode, owner)) {
        return finish(false, *err);
    }
    if (auto err = fsyncDirectory(splitDirAndName(path).first)) {
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

std::vector<std::string> preflightFileHook(const HookConfig& /*config*/) {
    return {};  // filled in by the file-ownership work of issue #19
}

}  // namespace rollguard::agent::detail
