// The env_file rewrite under SIGKILL: a writer process (rollguard-envwriter, the hook's own
// applyEnvFile) is killed at random moments during its rewrites, hundreds of times; after
// every kill the file, and its backup, must be a complete version, byte for byte: the
// original or the original with only its VALUE line changed. A killed writer may leave its
// temp file (`.<name>.rollguard.XXXXXX`) behind: such files are counted, never the target.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "temp_dir.h"

using namespace rollguard::testing;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t kPadBytes = 40000;  // tens of KB: a write takes several syscalls' worth
constexpr int kTrials = 200;
constexpr unsigned long long kRewritesPerWriter = 1'000'000;  // far more than fit in 20 ms

// As rollguard-envwriter builds it.
std::string envPadding(std::size_t bytes) {
    std::string pad(bytes, 'a');
    for (std::size_t i = 0; i < bytes; ++i) {
        pad[i] = static_cast<char>('a' + i % 26);
    }
    return pad;
}

// The original: comments, other keys, odd spacing, then VALUE, then the padding and a
// trailer after it, so a torn write would lose the end of the file.
const std::string kBefore = "# app settings (edited by hand and by rollguard)\n"
                            "export MODE=canary\n"
                            "\n"
                            "  QUOTED = \"a b # not a comment\"   # trailing comment\n"
                            "; legacy comment\n";
const std::string kOriginalValueLine = "VALUE=original\n";
const std::string kAfter = "PAD=" + envPadding(kPadBytes) + "\nTRAILER='end'\n# last line\n";

// The VALUE of a complete version of the file, or nullopt when `text` is anything else.
std::optional<std::string> versionOf(const std::string& text) {
    if (text.size() < kBefore.size() + kAfter.size() || text.compare(0, kBefore.size(), kBefore) != 0 ||
        text.compare(text.size() - kAfter.size(), kAfter.size(), kAfter) != 0) {
        return std::nullopt;
    }
    const std::string line = text.substr(kBefore.size(), text.size() - kBefore.size() - kAfter.size());
    if (line == kOriginalValueLine) {
        return std::string("original");
    }
    if (line.size() < 8 || line.rfind("VALUE=", 0) != 0 || line.back() != '\n') {
        return std::nullopt;
    }
    const std::string digits = line.substr(6, line.size() - 7);
    if (digits.empty() || digits.size() > 7 || digits.find_first_not_of("0123456789") != std::string::npos ||
        (digits.size() > 1 && digits[0] == '0')) {
        return std::nullopt;
    }
    return digits;
}

// Starts the writer with fork + execv (no shell); its output goes to `log`.
pid_t spawnWriter(const std::string& path, unsigned long long rewrites, const std::string& log) {
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    REQUIRE(out >= 0);
    std::vector<std::string> args{ROLLGUARD_ENVWRITER_BIN, path, std::to_string(rewrites), std::to_string(kPadBytes)};
    std::vector<char*> argv;
    for (auto& a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out, STDOUT_FILENO);
        ::dup2(out, STDERR_FILENO);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(out);
    REQUIRE(pid > 0);
    return pid;
}

int waitStatus(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

struct DirState {
    std::set<std::string> temps;  // stale temp files, by name
    bool other = false;           // anything that is neither the file, its backup nor a temp
};

DirState scan(const std::filesystem::path& dir, const std::string& name, ino_t target_ino, ino_t backup_ino) {
    DirState state;
    const std::string temp_prefix = "." + name + ".rollguard.";
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        const std::string n = entry.path().filename().string();
        if (n == name || n == name + ".rollguard.bak" || n == "writer.log") {
            continue;
        }
        if (n.rfind(temp_prefix, 0) != 0) {
            state.other = true;
            continue;
        }
        state.temps.insert(n);
        struct stat st {};
        REQUIRE(::lstat(entry.path().c_str(), &st) == 0);
        // A temp file is a separate inode: never the file readers open, nor its backup.
        CHECK(st.st_ino != target_ino);
        CHECK(st.st_ino != backup_ino);
    }
    return state;
}

}  // namespace

TEST_CASE("env file rewrites killed with SIGKILL always leave a complete version", "[integration][env_file][crash]") {
    unsigned seed = std::random_device{}();
    if (const char* fixed = std::getenv("ROLLGUARD_CRASH_SEED")) {
        seed = static_cast<unsigned>(std::strtoul(fixed, nullptr, 10));
    }
    WARN("env file crash test seed " << seed << " (set ROLLGUARD_CRASH_SEED to repeat)");
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> delay_us(0, 20'000);

    TempDir dir;
    const std::string name = "app.env";
    const std::string path = (dir / name).string();
    const std::string backup = path + ".rollguard.bak";
    const std::string log = (dir / "writer.log").string();
    const std::string original = kBefore + kOriginalValueLine + kAfter;
    REQUIRE(versionOf(original) == std::string("original"));
    writeFile(path, original);
    std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                           std::filesystem::perms::group_read);

    // A writer left alone finishes: the file ends at its last value, the backup one before.
    {
        TempDir sanity;
        const std::string p = (sanity / name).string();
        writeFile(p, original);
        const pid_t pid = spawnWriter(p, 20, (sanity / "log").string());
        const int status = waitStatus(pid);
        INFO(readFile(sanity / "log"));
        REQUIRE(WIFEXITED(status));
        REQUIRE(WEXITSTATUS(status) == 0);
        CHECK(versionOf(readFile(p)) == std::string("19"));
        CHECK(versionOf(readFile(p + ".rollguard.bak")) == std::string("18"));
    }

    std::map<std::string, int> outcomes;
    int changed = 0;
    int unchanged = 0;
    int left_temp = 0;
    int killed = 0;
    std::set<std::string> versions_seen;
    std::string previous = "original";
    std::size_t temps_before = 0;
    const auto started = std::chrono::steady_clock::now();
    for (int trial = 0; trial < kTrials; ++trial) {
        const pid_t pid = spawnWriter(path, kRewritesPerWriter, log);
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
        ::kill(pid, SIGKILL);
        const int status = waitStatus(pid);
        INFO("trial " << trial << ", seed " << seed << ", writer log: " << readFile(log));
        REQUIRE(WIFSIGNALED(status));  // still rewriting when killed; no failure of its own
        CHECK(WTERMSIG(status) == SIGKILL);
        ++killed;

        struct stat file_st {};
        REQUIRE(::lstat(path.c_str(), &file_st) == 0);
        REQUIRE(S_ISREG(file_st.st_mode));
        CHECK((file_st.st_mode & 07777) == 0640);  // the original's mode survives every rewrite
        const auto version = versionOf(readFile(path));
        REQUIRE(version);
        versions_seen.insert(*version);
        if (*version == previous) {
            ++unchanged;
        } else {
            ++changed;
        }
        previous = *version;

        struct stat backup_st {};
        if (::lstat(backup.c_str(), &backup_st) == 0) {
            CHECK(S_ISREG(backup_st.st_mode));
            CHECK(versionOf(readFile(backup)).has_value());
        }

        const DirState state = scan(dir.path(), name, file_st.st_ino, backup_st.st_ino);
        CHECK_FALSE(state.other);
        if (state.temps.size() > temps_before) {
            ++left_temp;  // killed between creating a temp file and renaming it
        }
        temps_before = state.temps.size();
        outcomes[*version == "original" ? "original" : "VALUE=<i>"]++;
    }
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);

    WARN("env file crash test: " << kTrials << " trials in " << took.count() << " ms, " << killed
                                 << " writers killed with SIGKILL; file complete after every kill ("
                                 << outcomes["original"] << " times the original, " << outcomes["VALUE=<i>"]
                                 << " times a rewritten version, " << versions_seen.size()
                                 << " distinct versions); file changed by " << changed << " trials, unchanged by "
                                 << unchanged << "; " << left_temp << " kills left a stale temp file ("
                                 << temps_before << " in the directory at the end, none the target)");
    // The kills must land while rewrites happen, or the test proves nothing.
    CHECK(changed > 0);
}
