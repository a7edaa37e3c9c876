// The file hooks and what stands at their path (issue #19): a symlink is refused unless
// follow_symlinks, a link swapped in after the path was resolved is never followed, and
// the preflight (preflightHook) reports each problem a run would hit without changing
// anything. The owner rule as an unprivileged user: here through a forked child that
// drops to uid 65534, and in tests/integration/test_file_hook_owner.cpp through the real
// binary.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "process.h"
#include "rollguard/agent/hooks.h"
#include "temp_dir.h"

using rollguard::agent::applyEnvFile;
using rollguard::agent::applyJsonFile;
using rollguard::agent::HookConfig;
using rollguard::agent::HookType;
using rollguard::agent::preflightHook;
using rollguard::testing::eventually;
using rollguard::testing::readFile;
using rollguard::testing::TempDir;
using rollguard::testing::writeFile;
namespace fs = std::filesystem;

namespace {

HookConfig envHook(const fs::path& path) {
    HookConfig config;
    config.name = "env";
    config.type = HookType::EnvFile;
    config.path = path.string();
    config.set = {{"A", "0"}};
    return config;
}

HookConfig jsonHook(const fs::path& path) {
    HookConfig config;
    config.name = "flags";
    config.type = HookType::JsonFile;
    config.path = path.string();
    config.flag_set = {{"/on", false}};
    return config;
}

std::set<std::string> listDir(const fs::path& dir) {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        out.insert(e.path().filename().string());
    }
    return out;
}

// The problems as one text, for INFO.
std::string joined(const std::vector<std::string>& problems) {
    std::string out;
    for (const auto& p : problems) {
        out += p + "\n";
    }
    return out;
}

// How many of this process's descriptors are open on `path` (by /proc/self/fd).
int openDescriptors(const fs::path& path) {
    int n = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc/self/fd", ec)) {
        std::error_code link_ec;
        if (fs::read_symlink(e.path(), link_ec) == path) {
            ++n;
        }
    }
    return n;
}

}  // namespace

TEST_CASE("a symlink at a file hook's path is refused by default and its target left alone",
          "[hooks][file_security]") {
    TempDir dir;
    const auto real = fs::canonical(dir.path());
    writeFile(real / "release.env", "A=1\n");
    fs::create_symlink(real / "release.env", real / "current.env");

    const auto result = applyEnvFile(envHook(real / "current.env"));
    CHECK_FALSE(result.ok);
    CHECK(result.message == (real / "current.env").string() + " is a symbolic link to " +
                                (real / "release.env").string() +
                                "; set follow_symlinks = true to edit its target");
    CHECK(readFile(real / "release.env") == "A=1\n");
    CHECK(fs::is_symlink(real / "current.env"));
    CHECK(listDir(real) == std::set<std::string>{"release.env", "current.env"});

    HookConfig json = jsonHook(real / "flags.json");
    writeFile(real / "flags.real.json", "{\"on\": true}\n");
    fs::create_symlink("flags.real.json", real / "flags.json");  // a relative link
    const auto json_result = applyJsonFile(json);
    CHECK_FALSE(json_result.ok);
    CHECK(json_result.message == (real / "flags.json").string() +
                                     " is a symbolic link to flags.real.json; set follow_symlinks = true to edit its "
                                     "target");
    CHECK(readFile(real / "flags.real.json") == "{\"on\": true}\n");
}

TEST_CASE("with follow_symlinks a file hook edits the link's target and keeps the link", "[hooks][file_security]") {
    TempDir dir;
    const auto real = fs::canonical(dir.path());
    fs::create_directory(real / "releases");
    writeFile(real / "releases/v2.env", "A=1\n");
    fs::create_symlink("releases/v2.env", real / "current.env");

    HookConfig config = envHook(real / "current.env");
    config.follow_symlinks = true;
    const auto result = applyEnvFile(config);
    REQUIRE(result.ok);
    // Messages name the file edited: the target.
    CHECK(result.message == "set A=0 in " + (real / "releases/v2.env").string());
    CHECK(readFile(real / "releases/v2.env") == "A=0\n");
    CHECK(fs::is_symlink(real / "current.env"));
    CHECK(fs::read_symlink(real / "current.env") == "releases/v2.env");
    // The backup sits beside the target, not the link.
    CHECK(readFile(real / "releases/v2.env.rollguard.bak") == "A=1\n");
    CHECK(listDir(real) == std::set<std::string>{"releases", "current.env"});
}

TEST_CASE("a symlink swapped in at the path between two runs is refused and its target left alone",
          "[hooks][file_security]") {
    TempDir dir;
    const auto real = fs::canonical(dir.path());
    writeFile(real / "app.env", "A=1\n");
    writeFile(real / "other.env", "A=1\nSECRET=keep\n");  // e.g. another service's config
    HookConfig config = envHook(real / "app.env");
    REQUIRE(applyEnvFile(config).ok);
    CHECK(readFile(real / "app.env") == "A=0\n");

    // Whoever can write the directory replaces the file with a link to another file.
    fs::create_symlink(real / "other.env", real / "swap");
    fs::rename(real / "swap", real / "app.env");
    config.set = {{"A", "2"}};
    const auto result = applyEnvFile(config);
    CHECK_FALSE(result.ok);
    CHECK(result.message.find("is a symbolic link to " + (real / "other.env").string()) != std::string::npos);
    CHECK(readFile(real / "other.env") == "A=1\nSECRET=keep\n");
    CHECK(fs::is_symlink(real / "app.env"));
}

TEST_CASE("a symlink swapped in after the path was resolved is not followed", "[hooks][file_security]") {
    TempDir dir;
    const auto real = fs::canonical(dir.path());
    writeFile(real / "target.env", "A=1\n");
    writeFile(real / "other.env", "A=1\nSECRET=keep\n");
    fs::create_symlink(real / "target.env", real / "link.env");
    HookConfig config = envHook(real / "link.env");
    config.follow_symlinks = true;

    // Hold the file's lock so the hook, once it has resolved the link and opened the
    // target, waits; then swap the target for a link to another file and let it go.
    const int held = ::open((real / "target.env").c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(held >= 0);
    REQUIRE(::flock(held, LOCK_EX) == 0);
    rollguard::agent::HookResult result;
    std::thread hook([&] { result = applyEnvFile(config); });
    // The hook has opened the target when a second descriptor on it shows up.
    const bool opened = eventually([&] { return openDescriptors(real / "target.env") >= 2; });
    fs::create_symlink(real / "other.env", real / "swap");
    fs::rename(real / "swap", real / "target.env");
    ::flock(held, LOCK_UN);
    ::close(held);
    hook.join();
    REQUIRE(opened);

    CHECK_FALSE(result.ok);
    CHECK(result.message == (real / "target.env").string() +
                                " is a symbolic link (replaced by one after it was located); not following it: "
                                "nothing changed");
    CHECK(readFile(real / "other.env") == "A=1\nSECRET=keep\n");
    CHECK(fs::is_symlink(real / "target.env"));
    CHECK(listDir(real) == std::set<std::string>{"target.env", "other.env", "link.env"});
}

TEST_CASE("preflight of a good file hook is ready and changes nothing", "[hooks][file_security][preflight]") {
    TempDir dir;
    const auto real = fs::canonical(dir.path());
    writeFile(real / "app.env", "A=1\n");
    struct stat before {};
    REQUIRE(::stat((real / "app.env").c_str(), &before) == 0);

    const auto env = preflightHook(envHook(real / "app.env"));
    INFO(joined(env.problems));
    CHECK(env.hook == "env");
    CHECK(env.ready);
    CHECK(env.problems.empty());

    writeFile(real / "flags.json", "{\"on\": true}\n");
    const auto json = preflightHook(jsonHook(real / "flags.json"));
    INFO(joined(json.problems));
    CHECK(json.ready);

    HookConfig created = envHook(real / "new.env");
    created.create = true;
    CHECK(preflightHook(created).ready);

    HookConfig linked = envHook(real / "link.env");
    fs::create_symlink(real / "app.env", real / "link.env");
    linked.follow_symlinks = true;
    CHECK(preflightHook(linked).ready);

    // No side effects: no file created, written or replaced.
    CHECK(listDir(real) == std::set<std::string>{"app.env", "flags.json", "link.env"});
    struct stat after {};
    REQUIRE(::stat((real / "app.env").c_str(), &after) == 0);
    CHECK(after.st_ino == before.st_ino);
    CHECK(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
    CHECK(readFile(real / "app.env") == "A=1\n");
}

TEST_CASE("preflight of a file hook names each problem a run would hit", "[hooks][file_security][preflight]") {
    TempDir dir;
    const auto real = fs::canonical(dir.path());
    const auto problemsOf = [](const HookConfig& config) {
        const auto p = preflightHook(config);
        CHECK(p.ready == p.problems.empty());
        return p.problems;
    };

    using Problems = std::vector<std::string>;
    CHECK(problemsOf(envHook(real / "missing.env")) ==
          Problems{(real / "missing.env").string() + " does not exist; create it or set create = true"});

    HookConfig no_dir = envHook(real / "nodir/app.env");
    no_dir.create = true;
    CHECK(problemsOf(no_dir) ==
          Problems{"the directory of " + (real / "nodir/app.env").string() + " does not exist; create it or correct path"});

    writeFile(real / "target.env", "A=1\n");
    fs::create_symlink(real / "target.env", real / "link.env");
    CHECK(problemsOf(envHook(real / "link.env")) ==
          Problems{(real / "link.env").string() + " is a symbolic link to " + (real / "target.env").string() +
                   "; set follow_symlinks = true to edit its target"});

    fs::create_directory(real / "adir");
    CHECK(problemsOf(envHook(real / "adir")) ==
          Problems{(real / "adir").string() + " is not a regular file; point path at the file to edit"});

    writeFile(real / "flags.json", "{\"on\": tru\n");
    const auto json = problemsOf(jsonHook(real / "flags.json"));
    REQUIRE(json.size() == 1);
    CHECK(json[0].rfind("the current content cannot be edited: " + (real / "flags.json").string() + ":1:", 0) == 0);
    CHECK(json[0].find("; fix the file") != std::string::npos);

    writeFile(real / "quote.env", "A=1\nB=\"never closed\n");
    const auto quote = problemsOf(envHook(real / "quote.env"));
    REQUIRE(quote.size() == 1);
    CHECK(quote[0] == "the current content cannot be edited: line 2: a quoted value is never closed; not editing the "
                      "file (a quote written after it would close it and change what the file says); fix the file");

    writeFile(real / "app.env", "A=1\n");
    fs::create_directory(real / "app.env.rollguard.bak");
    CHECK(problemsOf(envHook(real / "app.env")) ==
          Problems{(real / "app.env.rollguard.bak").string() +
                   " is a directory, which the backup cannot replace; remove it or set backup = false"});
    HookConfig no_backup = envHook(real / "app.env");
    no_backup.backup = false;
    CHECK(problemsOf(no_backup).empty());

    HookConfig bad_key = envHook(real / "app.env");
    bad_key.backup = false;
    bad_key.set = {{"BAD KEY", "1"}};
    CHECK(problemsOf(bad_key) == Problems{"invalid key 'BAD KEY'; correct the hook's configuration"});

    // The file checks are the file hooks' only: a webhook is checked for its own things.
    HookConfig webhook;
    webhook.type = HookType::Webhook;
    webhook.url = "http://127.0.0.1:1/";
    webhook.path = (real / "missing.env").string();
    CHECK(preflightHook(webhook).ready);
}

TEST_CASE("preflight as an unprivileged user reports an owner it cannot keep and a file it cannot read",
          "[hooks][file_security][preflight][owner]") {
    if (::geteuid() != 0) {
        WARN("skipped: " << "needs root to give files away and drop to uid 65534 (CI runs the tests as root)");
        return;
    }
    TempDir dir;
    const auto real = fs::canonical(dir.path());
    REQUIRE(::chmod(real.c_str(), 0777) == 0);  // the temp dir: writable and searchable by 65534
    writeFile(real / "theirs.env", "A=1\n");
    REQUIRE(::chown((real / "theirs.env").c_str(), 1234, 1234) == 0);
    REQUIRE(::chmod((real / "theirs.env").c_str(), 0640) == 0);
    writeFile(real / "ours.env", "A=1\n");
    REQUIRE(::chown((real / "ours.env").c_str(), 65534, 65534) == 0);
    REQUIRE(::chmod((real / "ours.env").c_str(), 0640) == 0);

    // The preflight runs in a child that drops to 65534:65534 (no supplementary groups);
    // it reports the problems back through a pipe, one per line, "--" between the hooks.
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
            ::setresuid(65534, 65534, 65534) != 0) {
            ::_exit(3);
        }
        std::string out;
        for (const char* name : {"theirs.env", "ours.env"}) {
            for (const auto& p : preflightHook(envHook(real / name)).problems) {
                out += p + "\n";
            }
            out += "--\n";
        }
        const bool written = ::write(fds[1], out.data(), out.size()) == static_cast<ssize_t>(out.size());
        ::_exit(written ? 0 : 4);
    }
    ::close(fds[1]);
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) {
        text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    INFO(text);

    const std::string theirs = (real / "theirs.env").string();
    const std::string expected_owner =
        "cannot keep the owner and group of " + theirs + " (uid 1234, gid 1234): rollguard runs as user nobody, uid 65534, without CAP_CHOWN";
    const auto split = text.find("--\n");
    REQUIRE(split != std::string::npos);
    const std::string first = text.substr(0, split);
    CHECK(first.find(theirs + " is not readable by rollguard's user (uid 65534)") != std::string::npos);
    CHECK(first.find(expected_owner) != std::string::npos);
    CHECK(first.find("grant rollguard CAP_CHOWN") != std::string::npos);
    // The file it owns: nothing to report.
    CHECK(text.substr(split + 3) == "--\n");
    CHECK(readFile(real / "theirs.env") == "A=1\n");
}
