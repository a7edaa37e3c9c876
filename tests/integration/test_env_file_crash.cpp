// The env_file rewrite under SIGKILL: a writer process (rollguard-envwriter, the hook's own
// applyEnvFile) is killed at a random moment 0-20 ms after it starts rewriting, hundreds of
// times; after every kill the file, and its backup, must be a complete version, byte for
// byte: the original or the original with only its VALUE line changed, and the backup the
// file's current or previous version. A killed writer may leave its temp file
// (`.<name>.rollguard.XXXXXX`) behind: such files are counted, and are never the target.
//
// The trials run twice: in $TMPDIR (a disk here: fsync makes a rewrite take ~20 ms, so
// kills land inside one or two rewrites, mostly mid-write) and on tmpfs (/dev/shm, when
// present: rewrites take well under a millisecond, so each writer gets through dozens and
// the kills land anywhere in the read-lock-write-rename cycle).

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "temp_dir.h"

using namespace rollguard::testing;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t kPadBytes = 40000;  // tens of KB: a write takes several syscalls' worth
constexpr int kTrialsPerDirectory = 120;  // 240 in all; about 8 s
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
    if (digits.empty() || digits.size() > 12 || digits.find_first_not_of("0123456789") != std::string::npos ||
        (digits.size() > 1 && digits[0] == '0')) {
        return std::nullopt;
    }
    return digits;
}

// Starts the writer with fork + execv (no shell); its stderr goes to `log`. Returns once
// it has printed "ready" (start-up done, about to rewrite), or -1 when it died before.
pid_t spawnWriter(const std::string& path, unsigned long long rewrites, unsigned long long first,
                  const std::string& log) {
    const int err = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    REQUIRE(err >= 0);
    int ready[2];
    REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
    std::vector<std::string> args{ROLLGUARD_ENVWRITER_BIN, path, std::to_string(rewrites), std::to_string(kPadBytes),
                                  std::to_string(first)};
    std::vector<char*> argv;
    for (auto& a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(ready[1], STDOUT_FILENO);
        ::dup2(err, STDERR_FILENO);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(err);
    ::close(ready[1]);
    REQUIRE(pid > 0);
    std::string line;
    char c = 0;
    while (line.find('\n') == std::string::npos) {
        const ssize_t n = ::read(ready[0], &c, 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        line += c;
    }
    ::close(ready[0]);
    return line == "ready\n" ? pid : -pid;
}

int waitStatus(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

struct DirState {
    std::size_t temps = 0;  // stale temp files
    bool other = false;     // anything that is neither the file, its backup nor a temp
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
            INFO("unexpected file " << n);
            state.other = true;
            continue;
        }
        ++state.temps;
        struct stat st {};
        REQUIRE(::lstat(entry.path().c_str(), &st) == 0);
        // A temp file is a separate inode: never the file readers open, nor its backup.
        CHECK(st.st_ino != target_ino);
        CHECK(st.st_ino != backup_ino);
    }
    return state;
}

// A directory made with mkdtemp under `base`, removed with its contents at the end.
class ScratchDir {
public:
    explicit ScratchDir(const std::string& base) {
        std::string tmpl = base + "/rollguard-crash-XXXXXX";
        if (::mkdtemp(tmpl.data()) != nullptr) {
            path_ = tmpl;
        }
    }
    ~ScratchDir() {
        std::error_code ec;
        if (!path_.empty()) {
            std::filesystem::remove_all(path_, ec);
        }
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

struct Outcomes {
    int trials = 0;
    int original = 0;       // the file was still the original
    int rewritten = 0;      // the file was a rewritten version
    int progressed = 0;     // the killed writer had completed at least one rewrite
    unsigned long long rewrites = 0;  // rewrites completed by all writers together
    int left_temp = 0;      // kills that left a stale temp file behind
    std::size_t temps_at_end = 0;
    std::chrono::milliseconds took{0};
};

// Runs the trials in `dir`: each writer w starts at VALUE=w*kRewritesPerWriter, so every
// version in a run is unique and tells which writer wrote it and how far it got.
Outcomes runTrials(const std::filesystem::path& dir, int trials, std::mt19937& rng, unsigned seed) {
    std::uniform_int_distribution<int> delay_us(0, 20'000);
    const std::string name = "app.env";
    const std::string path = (dir / name).string();
    const std::string backup = path + ".rollguard.bak";
    const std::string log = (dir / "writer.log").string();
    writeFile(path, kBefore + kOriginalValueLine + kAfter);
    std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                           std::filesystem::perms::group_read);

    Outcomes out;
    std::string file_version = "original";
    std::optional<std::string> backup_version;
    const auto started = std::chrono::steady_clock::now();
    for (int trial = 0; trial < trials; ++trial) {
        const unsigned long long first = static_cast<unsigned long long>(trial + 1) * kRewritesPerWriter;
        const pid_t pid = spawnWriter(path, kRewritesPerWriter, first, log);
        INFO("writer log: " << readFile(log));
        REQUIRE(pid > 0);
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
        ::kill(pid, SIGKILL);
        const int status = waitStatus(pid);
        INFO("directory " << dir << ", trial " << trial << ", seed " << seed << ", writer log: " << readFile(log));
        REQUIRE(WIFSIGNALED(status));  // still rewriting when killed, no failure of its own
        CHECK(WTERMSIG(status) == SIGKILL);
        ++out.trials;

        struct stat file_st {};
        REQUIRE(::lstat(path.c_str(), &file_st) == 0);
        REQUIRE(S_ISREG(file_st.st_mode));
        CHECK((file_st.st_mode & 07777) == 0640);  // the original's mode survives every rewrite
        const auto version = versionOf(readFile(path));
        INFO("file holds VALUE " << version.value_or("<not a complete version>"));
        REQUIRE(version);

        // The backup is written before the new version is renamed in: it is the file's
        // previous version, or its current one when the writer died between the two.
        std::vector<std::string> backup_may_be;
        if (*version == file_version) {
            backup_may_be = {file_version};
            if (backup_version) {
                backup_may_be.push_back(*backup_version);
            }
        } else {
            const unsigned long long value = std::stoull(*version);
            REQUIRE(value >= first);
            REQUIRE(value < first + kRewritesPerWriter);
            ++out.progressed;
            out.rewrites += value - first + 1;
            backup_may_be = {*version, value == first ? file_version : std::to_string(value - 1)};
        }
        struct stat backup_st {};
        if (::lstat(backup.c_str(), &backup_st) == 0) {
            CHECK(S_ISREG(backup_st.st_mode));
            const auto b = versionOf(readFile(backup));
            INFO("backup holds VALUE " << b.value_or("<not a complete version>"));
            REQUIRE(b);
            CHECK(std::find(backup_may_be.begin(), backup_may_be.end(), *b) != backup_may_be.end());
            backup_version = b;
        } else {
            CHECK_FALSE(backup_version);  // once written, a backup is only ever replaced
        }
        file_version = *version;
        (*version == "original" ? out.original : out.rewritten)++;

        const DirState state = scan(dir, name, file_st.st_ino, backup_st.st_ino);
        CHECK_FALSE(state.other);
        if (state.temps > out.temps_at_end) {
            ++out.left_temp;  // killed between creating a temp file and renaming it
        }
        out.temps_at_end = state.temps;
    }
    out.took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    return out;
}

std::string describe(const std::string& where, const Outcomes& o) {
    std::ostringstream s;
    s << where << ": " << o.trials << " writers killed with SIGKILL in " << o.took.count()
      << " ms; the file was complete after every kill (" << o.original << " times the original, " << o.rewritten
      << " times a rewritten version) and so was the backup; " << o.progressed
      << " writers had completed a rewrite, " << o.rewrites << " rewrites completed in all; " << o.left_temp
      << " kills left a stale temp file (" << o.temps_at_end << " in the directory at the end, none the target)";
    return s.str();
}

}  // namespace

TEST_CASE("env file rewrites killed with SIGKILL always leave a complete version", "[integration][env_file][crash]") {
    unsigned seed = std::random_device{}();
    if (const char* fixed = std::getenv("ROLLGUARD_CRASH_SEED")) {
        seed = static_cast<unsigned>(std::strtoul(fixed, nullptr, 10));
    }
    WARN("env file crash test seed " << seed << " (set ROLLGUARD_CRASH_SEED to repeat)");
    std::mt19937 rng(seed);

    // A writer left alone finishes: the file ends at its last value, the backup one before.
    {
        TempDir sanity;
        const std::string p = (sanity / "app.env").string();
        writeFile(p, kBefore + kOriginalValueLine + kAfter);
        const pid_t pid = spawnWriter(p, 20, 0, (sanity / "log").string());
        const int status = waitStatus(pid > 0 ? pid : -pid);
        INFO(readFile(sanity / "log"));
        CHECK(pid > 0);
        REQUIRE(WIFEXITED(status));
        REQUIRE(WEXITSTATUS(status) == 0);
        CHECK(versionOf(readFile(p)) == std::string("19"));
        CHECK(versionOf(readFile(p + ".rollguard.bak")) == std::string("18"));
    }

    int total = 0;
    {
        TempDir disk;
        const Outcomes o = runTrials(disk.path(), kTrialsPerDirectory, rng, seed);
        WARN(describe("$TMPDIR (" + disk.path().parent_path().string() + ")", o));
        total += o.trials;
        // Kills must land while rewrites happen, or the test proves nothing.
        CHECK(o.left_temp + o.progressed > 0);
    }
    ScratchDir shm("/dev/shm");
    if (shm.path().empty()) {
        WARN("no /dev/shm: the tmpfs half of the trials is skipped");
    } else {
        const Outcomes o = runTrials(shm.path(), kTrialsPerDirectory, rng, seed);
        WARN(describe("tmpfs (/dev/shm)", o));
        total += o.trials;
        CHECK(o.progressed > 0);
    }
    WARN("env file crash test: " << total << " trials in all, every one left a complete file and backup");
    CHECK(total >= kTrialsPerDirectory);
}
