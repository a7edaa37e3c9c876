// File hooks keep the owner, or refuse (issue #19), through the real binary run as an
// unprivileged user: `rollguard rollback` without a daemon runs the rule's hooks in this
// process, here under `setpriv --reuid=65534 --regid=65534 --clear-groups`, as the shipped
// unit runs it under User=rollguard. A file owned by someone else must come back
// untouched with a message saying what to do, never rewritten as rollguard's own; a file
// the user owns is rewritten with its owner and mode kept.

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>

#include "agent_config.h"
#include "process.h"
#include "temp_dir.h"

using namespace rollguard::testing;
namespace fs = std::filesystem;

namespace {

constexpr uid_t kNobody = 65534;
constexpr uid_t kApp = 1234;

struct stat statOf(const fs::path& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return st;
}

std::set<std::string> listDir(const fs::path& dir) {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        out.insert(e.path().filename().string());
    }
    return out;
}

/// A directory `work` (owned by 65534, 0755) inside the test's temp dir (opened to
/// others), holding the config and the log: what the unprivileged rollguard may write.
/// Returns "" when the setup is possible, else why the test is skipped.
std::string unprivilegedSetup(const TempDir& dir) {
    if (::geteuid() != 0) {
        return "needs root to give files away and run rollguard as uid 65534 (CI runs the tests as root)";
    }
    if (::access("/usr/bin/setpriv", X_OK) != 0) {
        return "needs setpriv (util-linux) to run rollguard as uid 65534";
    }
    const auto work = dir / "work";
    fs::create_directory(work);
    if (::chmod(dir.path().c_str(), 0755) != 0 || ::chown(work.c_str(), kNobody, kNobody) != 0 ||
        ::chmod(work.c_str(), 0755) != 0) {
        return "cannot prepare a directory for uid 65534";
    }
    // The temp dir's parents must let 65534 through.
    auto [rc, out] = runCommand({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                 "/usr/bin/test", "-w", work.string()});
    if (rc != 0) {
        return "uid 65534 cannot reach " + work.string() + " (a parent directory closed to others?)";
    }
    writeFile(work / "app.log", "");
    writeFile(work / "rollguard.toml",
              errorRatioConfig(work, {.agent = "listen = \"\"\n",
                                      .rule = "severity = \"critical\"\nhooks = [\"env\"]\n",
                                      .tail = "[[hook]]\nname = \"env\"\ntype = \"env_file\"\npath = \"" +
                                              (work / "app.env").string() +
                                              "\"\nset = { NEW_ROUTER_ENABLED = \"0\" }\n"}));
    return "";
}

std::pair<int, std::string> rollbackAsNobody(const TempDir& dir) {
    return runCommand({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ROLLGUARD_BIN,
                       "rollback", "-c", (dir / "work/rollguard.toml").string(), "--reason", "test"});
}

}  // namespace

TEST_CASE("an unprivileged rollguard refuses to rewrite a file it cannot give back to its owner",
          "[integration][file_security][owner]") {
    TempDir dir;
    if (const auto why = unprivilegedSetup(dir); !why.empty()) {
        WARN("skipped: " << why);
        return;
    }
    const auto env = dir / "work/app.env";
    const std::string original = "# app settings\nNEW_ROUTER_ENABLED=1\n";
    writeFile(env, original);
    REQUIRE(::chown(env.c_str(), kApp, kApp) == 0);
    REQUIRE(::chmod(env.c_str(), 0644) == 0);  // readable by 65534, which owns the directory

    const auto [rc, out] = rollbackAsNobody(dir);
    INFO(out);
    CHECK(rc != 0);
    const std::string real = fs::canonical(env).string();
    CHECK(out.find("failed  env: cannot keep the owner and group of " + real +
                   " (uid 1234, gid 1234): rollguard runs as user nobody, uid 65534, without CAP_CHOWN, and the "
                   "rewritten file would belong to that user, which the service reading it may not be allowed to "
                   "read; make rollguard's user the file's owner (chown 65534 " + real +
                   ") and give it a group that user belongs to, or grant rollguard CAP_CHOWN") != std::string::npos);
    CHECK(out.find("grant rollguard CAP_CHOWN (AmbientCapabilities=CAP_CHOWN and CapabilityBoundingSet=CAP_CHOWN in a "
                   "drop-in of its systemd unit) (nothing changed)") !=
          std::string::npos);

    const auto st = statOf(env);
    CHECK(st.st_uid == kApp);
    CHECK(st.st_gid == kApp);
    CHECK((st.st_mode & 07777) == 0644);
    CHECK(readFile(env) == original);
    // Neither a backup nor a temp file left behind.
    CHECK(listDir(dir / "work") == std::set<std::string>{"app.env", "app.log", "rollguard.toml"});
}

TEST_CASE("an unprivileged rollguard rewrites a file it owns and keeps its owner and mode",
          "[integration][file_security][owner]") {
    TempDir dir;
    if (const auto why = unprivilegedSetup(dir); !why.empty()) {
        WARN("skipped: " << why);
        return;
    }
    const auto env = dir / "work/app.env";
    writeFile(env, "# app settings\nNEW_ROUTER_ENABLED=1\n");
    REQUIRE(::chown(env.c_str(), kNobody, kNobody) == 0);
    REQUIRE(::chmod(env.c_str(), 0640) == 0);

    const auto [rc, out] = rollbackAsNobody(dir);
    INFO(out);
    CHECK(rc == 0);
    CHECK(out.find("ok  env: set NEW_ROUTER_ENABLED=0 in " + fs::canonical(env).string()) != std::string::npos);
    CHECK(readFile(env) == "# app settings\nNEW_ROUTER_ENABLED=0\n");
    const auto st = statOf(env);
    CHECK(st.st_uid == kNobody);
    CHECK(st.st_gid == kNobody);
    CHECK((st.st_mode & 07777) == 0640);
    const auto bak = statOf(dir / "work/app.env.rollguard.bak");
    CHECK(bak.st_uid == kNobody);
    CHECK((bak.st_mode & 07777) == 0640);
}

TEST_CASE("a root rollguard rewrites a file owned by another user and gives it back",
          "[integration][file_security][owner]") {
    if (::geteuid() != 0) {
        WARN("skipped: " << "needs root to give files away (CI runs the tests as root)");
        return;
    }
    TempDir dir;
    writeFile(dir / "app.log", "");
    const auto env = dir / "app.env";
    writeFile(env, "NEW_ROUTER_ENABLED=1\n");
    REQUIRE(::chown(env.c_str(), kApp, kApp) == 0);
    REQUIRE(::chmod(env.c_str(), 0640) == 0);
    writeFile(dir / "rollguard.toml",
              errorRatioConfig(dir.path(), {.agent = "listen = \"\"\n",
                                            .rule = "severity = \"critical\"\nhooks = [\"env\"]\n",
                                            .tail = "[[hook]]\nname = \"env\"\ntype = \"env_file\"\npath = \"" +
                                                    env.string() + "\"\nset = { NEW_ROUTER_ENABLED = \"0\" }\n"}));
    const auto [rc, out] =
        runCommand({ROLLGUARD_BIN, "rollback", "-c", (dir / "rollguard.toml").string(), "--reason", "test"});
    INFO(out);
    CHECK(rc == 0);
    CHECK(readFile(env) == "NEW_ROUTER_ENABLED=0\n");
    const auto st = statOf(env);
    CHECK(st.st_uid == kApp);
    CHECK(st.st_gid == kApp);
    CHECK((st.st_mode & 07777) == 0640);
}

TEST_CASE("the real binary does not write through a symlink swapped in at a file hook's path",
          "[integration][file_security][symlink]") {
    // Whoever can write the env file's directory replaces the file with a symlink to a file
    // rollguard may write (here a stand-in for its own state): `rollguard rollback` must
    // refuse and leave the link's target alone, unless follow_symlinks says to edit it.
    TempDir dir;
    const auto env = dir / "app.env";
    const auto victim = dir / "state-file";
    writeFile(dir / "app.log", "");
    writeFile(victim, "precious=1\n");
    fs::create_symlink(victim, env);
    const auto config = [&](bool follow) {
        return errorRatioConfig(dir.path(),
                                {.agent = "listen = \"\"\n",
                                 .rule = "severity = \"critical\"\nhooks = [\"env\"]\n",
                                 .tail = "[[hook]]\nname = \"env\"\ntype = \"env_file\"\npath = \"" + env.string() +
                                         "\"\nset = { NEW_ROUTER_ENABLED = \"0\" }\n" +
                                         (follow ? "follow_symlinks = true\n" : "")});
    };
    writeFile(dir / "rollguard.toml", config(false));
    {
        const auto [rc, out] = runCommand(
            {ROLLGUARD_BIN, "rollback", "-c", (dir / "rollguard.toml").string(), "--reason", "swap"});
        INFO(out);
        CHECK(rc == 1);
        CHECK(out.find(env.string() + " is a symbolic link to " + victim.string() +
                       "; set follow_symlinks = true to edit its target") != std::string::npos);
        CHECK(readFile(victim) == "precious=1\n");
        CHECK(fs::is_symlink(env));
    }
    // Configured to follow: the target is edited and the link stays.
    writeFile(dir / "rollguard.toml", config(true));
    {
        const auto [rc, out] = runCommand(
            {ROLLGUARD_BIN, "rollback", "-c", (dir / "rollguard.toml").string(), "--reason", "follow"});
        INFO(out);
        CHECK(rc == 0);
        CHECK(readFile(victim) == "precious=1\nNEW_ROUTER_ENABLED=0\n");
        CHECK(fs::is_symlink(env));
    }
}
