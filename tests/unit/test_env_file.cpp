#include <catch2/catch.hpp>

#include <filesystem>
#include <set>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

#include "rollguard/agent/hooks.h"
#include "temp_dir.h"

using rollguard::agent::applyEnvFile;
using rollguard::agent::HookConfig;
using rollguard::agent::HookType;
using rollguard::agent::rewriteEnvText;
using rollguard::testing::readFile;
using rollguard::testing::TempDir;
using rollguard::testing::writeFile;

namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;
using Keys = std::vector<std::string>;

std::string rewrite(const std::string& text, const Pairs& set, const Keys& unset, bool* changed = nullptr) {
    bool c = false;
    std::string out = rewriteEnvText(text, set, unset, &c);
    if (changed != nullptr) {
        *changed = c;
    }
    return out;
}

struct stat statOf(const std::filesystem::path& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return st;
}

std::set<std::string> listDir(const std::filesystem::path& dir) {
    std::set<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        names.insert(e.path().filename().string());
    }
    return names;
}

HookConfig envHook(const std::filesystem::path& path) {
    HookConfig c;
    c.name = "force-legacy";
    c.type = HookType::EnvFile;
    c.path = path.string();
    c.timeout = std::chrono::seconds{2};
    return c;
}

}  // namespace

TEST_CASE("rewriteEnvText replaces values and keeps every other byte", "[hooks][env_file]") {
    const std::string in =
        "# rollout flags\n"
        "NEW_ROUTER_ENABLED=1\n"
        "\n"
        "  export   PHASE=\"4\"   # current phase\n"
        "OTHER=keep me  \n"
        "; systemd comment\n"
        "SINGLE='a b'\n"
        "not a definition line\n"
        "TAIL = 7";
    bool changed = false;
    const std::string out = rewrite(in, {{"NEW_ROUTER_ENABLED", "0"}, {"PHASE", "0"}, {"SINGLE", "x y"}, {"TAIL", "8"}},
                                    {}, &changed);
    CHECK(changed);
    CHECK(out ==
          "# rollout flags\n"
          "NEW_ROUTER_ENABLED=0\n"
          "\n"
          "  export   PHASE=\"0\"   # current phase\n"  // quoting kept: the comment stays a comment
          "OTHER=keep me  \n"
          "; systemd comment\n"
          "SINGLE='x y'\n"
          "not a definition line\n"
          "TAIL = 8");
}

TEST_CASE("rewriteEnvText drops an unquoted value's trailing text with the value", "[hooks][env_file]") {
    // Unquoted values run to the end of the line (systemd semantics), so "# on" is part
    // of the old value and is replaced with it.
    CHECK(rewrite("A=1 # on\n", {{"A", "0"}}, {}) == "A=0\n");
}

TEST_CASE("rewriteEnvText appends missing keys in config order", "[hooks][env_file]") {
    CHECK(rewrite("A=1", {{"B", "2"}, {"C", "3"}}, {}) == "A=1\nB=2\nC=3\n");
    CHECK(rewrite("A=1\n", {{"B", "2"}}, {}) == "A=1\nB=2\n");
    CHECK(rewrite("", {{"B", "2"}}, {}) == "B=2\n");
    // A later duplicate in `set` wins.
    CHECK(rewrite("", {{"B", "2"}, {"B", "5"}}, {}) == "B=5\n");
}

TEST_CASE("rewriteEnvText unsets every line of a key", "[hooks][env_file]") {
    bool changed = false;
    CHECK(rewrite("A=1\nFOO=x\n# c\nexport FOO=\"y\nz\"\nB=2\n", {}, {"FOO"}, &changed) == "A=1\n# c\nB=2\n");
    CHECK(changed);
    CHECK(rewrite("A=1\n", {}, {"FOO"}, &changed) == "A=1\n");
    CHECK_FALSE(changed);
    // unset wins over set: the key is neither kept nor appended.
    CHECK(rewrite("A=1\n", {{"FOO", "1"}}, {"FOO"}) == "A=1\n");
}

TEST_CASE("rewriteEnvText replaces every definition of a duplicated key", "[hooks][env_file]") {
    CHECK(rewrite("A=1\nB=1\nA=2\n", {{"A", "0"}}, {}) == "A=0\nB=1\nA=0\n");
}

TEST_CASE("rewriteEnvText quotes only values that need it", "[hooks][env_file]") {
    CHECK(rewrite("", {{"URL", "https://x.y/z,a@b%c+d-e_f"}}, {}) == "URL=https://x.y/z,a@b%c+d-e_f\n");
    CHECK(rewrite("", {{"E", ""}}, {}) == "E=\n");
    CHECK(rewrite("", {{"S", "a \"b\" $HOME \\ `x`"}}, {}) == "S=\"a \\\"b\\\" \\$HOME \\\\ \\`x\\`\"\n");
    CHECK(rewrite("", {{"N", "one\ntwo"}}, {}) == "N=\"one\\ntwo\"\n");
}

TEST_CASE("rewriteEnvText keeps a line whose value is already right", "[hooks][env_file]") {
    bool changed = true;
    const std::string in = "A=\"0\"\nB='x y'\nexport C=\"say \\\"hi\\\"\"\nD=plain  \n";
    CHECK(rewrite(in, {{"A", "0"}, {"B", "x y"}, {"C", "say \"hi\""}, {"D", "plain"}}, {}, &changed) == in);
    CHECK_FALSE(changed);
    // Running the output through again changes nothing.
    const std::string once = rewrite("A=1\n", {{"A", "a b$"}, {"Z", "1"}}, {"Q"});
    CHECK(rewrite(once, {{"A", "a b$"}, {"Z", "1"}}, {"Q"}, &changed) == once);
    CHECK_FALSE(changed);
}

TEST_CASE("rewriteEnvText handles CRLF and multi-line quoted values", "[hooks][env_file]") {
    CHECK(rewrite("A=1\r\nB=2\r\n", {{"A", "0"}}, {}) == "A=0\r\nB=2\r\n");
    CHECK(rewrite("M=\"line1\nline2\" # note\nB=2\n", {{"M", "x"}}, {}) == "M=\"x\" # note\nB=2\n");
    // An unterminated quote is read as a plain value, not as the rest of the file.
    CHECK(rewrite("A=\"open\nB=2\n", {{"A", "0"}}, {}) == "A=0\nB=2\n");
}

TEST_CASE("applyEnvFile rewrites atomically, keeps mode and writes a backup", "[hooks][env_file]") {
    TempDir dir;
    // Messages name the resolved path; resolve the temp dir the same way.
    const auto path = std::filesystem::canonical(dir.path()) / "app.env";
    const std::string original = "# flags\nexport NEW_ROUTER_ENABLED=1\nFOO=bar\n\nKEEP=\"yes\"\n";
    writeFile(path, original);
    REQUIRE(::chmod(path.c_str(), 0640) == 0);

    HookConfig config = envHook(path);
    config.set = {{"NEW_ROUTER_ENABLED", "0"}, {"ADDED", "two words"}};
    config.unset = {"FOO"};
    const auto result = applyEnvFile(config);
    REQUIRE(result.ok);
    CHECK(result.message == "set NEW_ROUTER_ENABLED=0, ADDED=two words; unset FOO in " + path.string());
    CHECK(readFile(path) == "# flags\nexport NEW_ROUTER_ENABLED=0\n\nKEEP=\"yes\"\nADDED=\"two words\"\n");
    CHECK((statOf(path).st_mode & 07777) == 0640);
    CHECK(readFile(dir / "app.env.rollguard.bak") == original);
    CHECK((statOf(dir / "app.env.rollguard.bak").st_mode & 07777) == 0640);
    CHECK(listDir(dir.path()) == std::set<std::string>{"app.env", "app.env.rollguard.bak"});

    SECTION("a second run is a no-op that leaves the file alone") {
        const auto before = statOf(path);
        const std::string content = readFile(path);
        const auto again = applyEnvFile(config);
        REQUIRE(again.ok);
        CHECK(again.message == "already up to date: " + path.string());
        const auto after = statOf(path);
        CHECK(after.st_ino == before.st_ino);
        CHECK(after.st_mtim.tv_sec == before.st_mtim.tv_sec);
        CHECK(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
        CHECK(readFile(path) == content);
        CHECK(readFile(dir / "app.env.rollguard.bak") == original);
    }
    SECTION("the backup holds the version just before the latest change") {
        const std::string previous = readFile(path);
        config.set = {{"NEW_ROUTER_ENABLED", "1"}};
        config.unset = {};
        REQUIRE(applyEnvFile(config).ok);
        CHECK(readFile(dir / "app.env.rollguard.bak") == previous);
    }
}

TEST_CASE("applyEnvFile without backup writes no backup", "[hooks][env_file]") {
    TempDir dir;
    const auto path = dir / "app.env";
    writeFile(path, "A=1\n");
    HookConfig config = envHook(path);
    config.set = {{"A", "0"}};
    config.backup = false;
    REQUIRE(applyEnvFile(config).ok);
    CHECK(readFile(path) == "A=0\n");
    CHECK(listDir(dir.path()) == std::set<std::string>{"app.env"});
}

TEST_CASE("applyEnvFile refuses a missing file unless create is set", "[hooks][env_file]") {
    TempDir dir;
    const auto path = std::filesystem::canonical(dir.path()) / "missing.env";
    HookConfig config = envHook(path);
    config.set = {{"A", "1"}};

    const auto refused = applyEnvFile(config);
    CHECK_FALSE(refused.ok);
    CHECK(refused.message == path.string() + " does not exist (set create = true to create it)");
    CHECK(listDir(dir.path()).empty());

    config.create = true;
    const auto created = applyEnvFile(config);
    REQUIRE(created.ok);
    CHECK(created.message == "created; set A=1 in " + path.string());
    CHECK(readFile(path) == "A=1\n");
    CHECK((statOf(path).st_mode & 07777) == 0600);
    // Nothing to back up for a file that did not exist.
    CHECK(listDir(dir.path()) == std::set<std::string>{"missing.env"});
}

TEST_CASE("applyEnvFile with follow_symlinks edits the target of a symlink and keeps the link", "[hooks][env_file]") {
    TempDir dir;
    const auto target = dir / "release.env";
    const auto link = dir / "current.env";
    writeFile(target, "A=1\n");
    std::filesystem::create_symlink(target, link);
    HookConfig config = envHook(link);
    config.set = {{"A", "0"}};
    config.backup = false;
    config.follow_symlinks = true;
    REQUIRE(applyEnvFile(config).ok);
    CHECK(std::filesystem::is_symlink(link));
    CHECK(readFile(target) == "A=0\n");
}

TEST_CASE("applyEnvFile rejects invalid keys and non-regular files", "[hooks][env_file]") {
    TempDir dir;
    HookConfig config = envHook(dir / "x.env");
    config.create = true;
    config.set = {{"BAD KEY", "1"}};
    const auto bad_key = applyEnvFile(config);
    CHECK_FALSE(bad_key.ok);
    CHECK(bad_key.message == "invalid key 'BAD KEY'");

    const auto real_dir = std::filesystem::canonical(dir.path());
    HookConfig on_dir = envHook(real_dir);
    on_dir.set = {{"A", "1"}};
    const auto not_file = applyEnvFile(on_dir);
    CHECK_FALSE(not_file.ok);
    CHECK(not_file.message == real_dir.string() + " is not a regular file");
}

TEST_CASE("env_file hook made by makeHook applies its config", "[hooks][env_file]") {
    TempDir dir;
    const auto path = dir / "app.env";
    writeFile(path, "A=1\n");
    HookConfig config = envHook(path);
    config.set = {{"A", "0"}};
    const auto hook = rollguard::agent::makeHook(config);
    REQUIRE(hook);
    CHECK(hook->name() == "force-legacy");
    CHECK(hook->type() == HookType::EnvFile);
    const auto result = hook->run(rollguard::agent::BreachEvent{});
    CHECK(result.ok);
    CHECK(result.attempts == 1);
    CHECK(readFile(path) == "A=0\n");
}

TEST_CASE("rewriteEnvText changes only the key's line across a table of tricky files", "[hooks][env_file]") {
    struct Case {
        const char* name;
        std::string before;
        std::string after;  // FLAG set to 0
    };
    const std::vector<Case> cases = {
        {"no trailing newline", "A=1\nFLAG=1", "A=1\nFLAG=0"},
        {"CRLF", "A=1\r\nFLAG=1\r\n# c\r\n", "A=1\r\nFLAG=0\r\n# c\r\n"},
        {"export and spacing", "  export  FLAG = 1\n", "  export  FLAG = 0\n"},
        {"comment after a quoted value", "FLAG=\"1\" # on\nB=2\n", "FLAG=\"0\" # on\nB=2\n"},
        {"single quotes", "FLAG='1'\n", "FLAG='0'\n"},
        {"empty value", "FLAG=\nB=\n", "FLAG=0\nB=\n"},
        {"empty quoted value", "FLAG=\"\"\n", "FLAG=\"0\"\n"},
        {"duplicate keys", "FLAG=1\nX=y\nFLAG=2\n", "FLAG=0\nX=y\nFLAG=0\n"},
        {"unicode around", "# caf\xC3\xA9 \xF0\x9F\x9A\x80\nNAME=\"J\xC3\xBCrgen\"\nFLAG=1\n",
         "# caf\xC3\xA9 \xF0\x9F\x9A\x80\nNAME=\"J\xC3\xBCrgen\"\nFLAG=0\n"},
        {"a prefix of the key is another key", "FLAGS=1\nFLAG_X=1\nFLAG=1\n", "FLAGS=1\nFLAG_X=1\nFLAG=0\n"},
        {"commented-out definition", "# FLAG=1\nFLAG=1\n", "# FLAG=1\nFLAG=0\n"},
        {"multi-line quoted value of another key", "M=\"a\nFLAG=1\nb\"\nFLAG=1\n", "M=\"a\nFLAG=1\nb\"\nFLAG=0\n"},
        {"missing key is appended", "A=1\n", "A=1\nFLAG=0\n"},
        {"missing key after no trailing newline", "A=1", "A=1\nFLAG=0\n"},
        {"empty file", "", "FLAG=0\n"},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        bool changed = false;
        CHECK(rollguard::agent::rewriteEnvText(c.before, {{"FLAG", "0"}}, {}, &changed) == c.after);
        CHECK(changed);
        // A second rewrite changes nothing.
        CHECK(rollguard::agent::rewriteEnvText(c.after, {{"FLAG", "0"}}, {}, &changed) == c.after);
        CHECK_FALSE(changed);
    }
}

TEST_CASE("env_file hook writes rollout_percent from a rollout event", "[hooks][env_file][rollout]") {
    TempDir dir;
    const auto path = std::filesystem::canonical(dir.path()) / "rollout.env";
    writeFile(path, "# rollout\nROLLOUT_PERCENT=5\nOTHER=1\n");
    HookConfig config = envHook(path);
    config.name = "percent";
    config.set = {{"ROLLOUT_PERCENT", "{{rollout_percent}}"}, {"NOTE", "at {{rollout_percent}} %"}};
    const auto hook = rollguard::agent::makeHook(config);
    rollguard::agent::BreachEvent event;
    event.rollout_percent = 25;
    event.rollout_previous_percent = 5;
    const auto result = hook->run(event);
    REQUIRE(result.ok);
    CHECK(result.message == "set ROLLOUT_PERCENT=25, NOTE=at 25 % in " + path.string());
    CHECK(readFile(path) == "# rollout\nROLLOUT_PERCENT=25\nOTHER=1\nNOTE=\"at 25 %\"\n");

    // The same percentage again: nothing to do, the file is left alone.
    const auto before = statOf(path);
    const auto again = hook->run(event);
    REQUIRE(again.ok);
    CHECK(again.message == "already up to date: " + path.string());
    CHECK(statOf(path).st_ino == before.st_ino);

    event.rollout_percent = 0;
    event.rollout_previous_percent = 25;
    REQUIRE(hook->run(event).ok);
    CHECK(readFile(path) == "# rollout\nROLLOUT_PERCENT=0\nOTHER=1\nNOTE=\"at 0 %\"\n");
}

TEST_CASE("env_file hook with rollout_percent fails on an event without one and changes nothing", "[hooks][env_file][rollout]") {
    TempDir dir;
    const auto path = dir / "rollout.env";
    writeFile(path, "ROLLOUT_PERCENT=5\n");
    HookConfig config = envHook(path);
    config.set = {{"ROLLOUT_PERCENT", "{{rollout_percent}}"}};
    const auto result = rollguard::agent::makeHook(config)->run(rollguard::agent::BreachEvent{});
    CHECK_FALSE(result.ok);
    CHECK(result.message == "{{rollout_percent}} is only set for [rollout] events: nothing changed");
    CHECK(readFile(path) == "ROLLOUT_PERCENT=5\n");
    CHECK(listDir(dir.path()) == std::set<std::string>{"rollout.env"});
}
