// rollguard as a systemd service (issue #8): the sd_notify protocol seen by a test
// socket (READY=1, WATCHDOG=1, STOPPING=1 from the real binary), the bounded stop, and
// the shipped unit through `systemd-analyze verify` and `systemd-analyze security`.

#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "http_client.h"
#include "http_receiver.h"
#include "process.h"
#include "rollguard/agent/sd_notify.h"
#include "temp_dir.h"

using namespace rollguard::testing;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

/// The service manager's side: a datagram socket bound to a path or an abstract name.
class NotifySocket {
public:
    /// `name`: a filesystem path, or "@name" for an abstract socket.
    explicit NotifySocket(const std::string& name) : name_(name) {
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        REQUIRE(name.size() < sizeof(address.sun_path));
        std::memcpy(address.sun_path, name.data(), name.size());
        socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
        if (name.front() == '@') {
            address.sun_path[0] = '\0';
        } else {
            length += 1;
        }
        REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&address), length) == 0);
    }
    ~NotifySocket() {
        ::close(fd_);
        if (name_.front() == '/') {
            ::unlink(name_.c_str());
        }
    }
    NotifySocket(const NotifySocket&) = delete;
    NotifySocket& operator=(const NotifySocket&) = delete;

    /// The next datagram, or nullopt when none comes within `timeout` (a deadline for a
    /// test that would otherwise hang, not a timing assertion).
    std::optional<std::string> receive(std::chrono::milliseconds timeout = 10s) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
            return std::nullopt;
        }
        char buffer[4096];
        const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
        if (n < 0) {
            return std::nullopt;
        }
        return std::string(buffer, static_cast<std::size_t>(n));
    }

    /// Receives until a datagram contains `needle`; returns it (nullopt: none came).
    std::optional<std::string> receiveContaining(const std::string& needle) {
        for (int i = 0; i < 1000; ++i) {
            auto message = receive();
            if (!message) {
                return std::nullopt;
            }
            if (message->find(needle) != std::string::npos) {
                return message;
            }
        }
        return std::nullopt;
    }

private:
    std::string name_;
    int fd_ = -1;
};

/// Sets an environment variable for the scope of a test and restores the old value.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const std::optional<std::string>& value) : name_(name) {
        if (const char* old = std::getenv(name)) {
            old_ = old;
        }
        set(value);
    }
    ~ScopedEnv() { set(old_); }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    void set(const std::optional<std::string>& value) {
        if (value) {
            ::setenv(name_, value->c_str(), 1);
        } else {
            ::unsetenv(name_);
        }
    }
    const char* name_;
    std::optional<std::string> old_;
};

/// One source, one rule, ticking once an hour: after the first tick, anything the agent
/// sends while the test runs comes from between ticks.
std::string hourlyTickConfig(const TempDir& dir, std::uint16_t port) {
    const std::string d = dir.path().string();
    return "[agent]\ntick = \"1h\"\nstate_dir = \"" + d + "/state\"\nlisten = \"127.0.0.1:" +
           std::to_string(port) + "\"\n\n[[source]]\nname = \"app\"\ntype = \"json_log\"\npaths = [\"" + d +
           "/app.log\"]\n\n[[rule]]\nname = \"errors\"\nsource = \"app\"\nmetric = \"error_ratio\"\n"
           "above = 0.5\nwindow = \"2h\"\n";
}

std::optional<std::string> findSystemdAnalyze() {
    for (const char* candidate : {"/usr/bin/systemd-analyze", "/bin/systemd-analyze"}) {
        if (::access(candidate, X_OK) == 0) {
            return std::string(candidate);
        }
    }
    return std::nullopt;
}

/// The shipped unit configured as CMake does, with the build's binary in ExecStart= and
/// ExecStartPre= (verify checks that the programs exist), written to `dir`.
std::string configureUnit(const TempDir& dir) {
    std::string text = readFile(fs::path(ROLLGUARD_SOURCE_DIR) / "systemd" / "rollguard.service.in");
    const std::string bindir = fs::path(ROLLGUARD_BIN).parent_path().string();
    const std::string placeholder = "@CMAKE_INSTALL_FULL_BINDIR@";
    for (auto at = text.find(placeholder); at != std::string::npos; at = text.find(placeholder, at)) {
        text.replace(at, placeholder.size(), bindir);
        at += bindir.size();
    }
    REQUIRE(text.find("@CMAKE_") == std::string::npos);  // every placeholder configured
    const std::string path = (dir / "rollguard.service").string();
    writeFile(path, text);
    return path;
}

}  // namespace

TEST_CASE("sdNotify sends one datagram to a path or an abstract socket and is a no-op without NOTIFY_SOCKET",
          "[systemd][integration]") {
    TempDir dir;
    {
        ScopedEnv unset("NOTIFY_SOCKET", std::nullopt);
        CHECK_FALSE(rollguard::agent::sdNotify("READY=1"));
    }
    {
        ScopedEnv empty("NOTIFY_SOCKET", std::string());
        CHECK_FALSE(rollguard::agent::sdNotify("READY=1"));
    }
    {
        ScopedEnv relative("NOTIFY_SOCKET", std::string("notify.sock"));
        CHECK_FALSE(rollguard::agent::sdNotify("READY=1"));
    }
    {
        const std::string path = (dir / "notify.sock").string();
        NotifySocket socket(path);
        ScopedEnv env("NOTIFY_SOCKET", path);
        REQUIRE(rollguard::agent::sdNotify("READY=1\nSTATUS=path socket"));
        CHECK(socket.receive() == std::optional<std::string>("READY=1\nSTATUS=path socket"));
    }
    {
        const std::string name = "@rollguard-test-" + std::to_string(::getpid());
        NotifySocket socket(name);
        ScopedEnv env("NOTIFY_SOCKET", name);
        REQUIRE(rollguard::agent::sdNotify("WATCHDOG=1"));
        CHECK(socket.receive() == std::optional<std::string>("WATCHDOG=1"));
        // Another abstract name with the same prefix gets nothing: the address length
        // covers exactly the name.
        NotifySocket longer(name + "x");
        REQUIRE(rollguard::agent::sdNotify("STOPPING=1"));
        CHECK(socket.receive() == std::optional<std::string>("STOPPING=1"));
        CHECK_FALSE(longer.receive(0ms));
    }
    {
        // Nobody listens there: a failure, not an exception or a signal.
        ScopedEnv env("NOTIFY_SOCKET", (dir / "nobody.sock").string());
        CHECK_FALSE(rollguard::agent::sdNotify("READY=1"));
    }
}

TEST_CASE("sdWatchdogInterval reads WATCHDOG_USEC and honours WATCHDOG_PID", "[systemd][integration]") {
    using std::chrono::microseconds;
    {
        ScopedEnv usec("WATCHDOG_USEC", std::nullopt);
        CHECK_FALSE(rollguard::agent::sdWatchdogInterval());
    }
    ScopedEnv pid_unset("WATCHDOG_PID", std::nullopt);
    // libsystemd's parser (sd_watchdog_enabled) decides; it skips leading blanks and a
    // '+' (" 30" is 30 us), which systemd itself never writes.
    for (const char* bad : {"", "0", "-5", "12x", "30 ", "abc", "99999999999999999999999",
                            "18446744073709551614"}) {
        INFO(bad);
        ScopedEnv usec("WATCHDOG_USEC", std::string(bad));
        CHECK_FALSE(rollguard::agent::sdWatchdogInterval());
    }
    ScopedEnv usec("WATCHDOG_USEC", std::string("30000000"));
    CHECK(rollguard::agent::sdWatchdogInterval() == std::optional<microseconds>(microseconds{30'000'000}));
    {
        ScopedEnv ours("WATCHDOG_PID", std::to_string(::getpid()));
        CHECK(rollguard::agent::sdWatchdogInterval() == std::optional<microseconds>(microseconds{30'000'000}));
    }
    {
        ScopedEnv other("WATCHDOG_PID", std::to_string(::getpid() + 1));
        CHECK_FALSE(rollguard::agent::sdWatchdogInterval());
    }
    {
        ScopedEnv garbage("WATCHDOG_PID", std::string("self"));
        CHECK_FALSE(rollguard::agent::sdWatchdogInterval());
    }
}

TEST_CASE("rollguard run tells systemd READY=1, pings WATCHDOG=1, RELOADING=1 on SIGHUP and STOPPING=1 on SIGTERM",
          "[systemd][integration]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    const ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    const std::uint16_t port = reserved.port();
    writeFile(dir / "rollguard.toml", hourlyTickConfig(dir, port));
    const std::string socket_path = (dir / "notify.sock").string();
    NotifySocket socket(socket_path);

    // The watchdog wants a ping every 400 ms and the agent ticks once an hour: every
    // WATCHDOG=1 after the first comes from run()'s heartbeat between ticks.
    Process daemon({ROLLGUARD_BIN, "run", "-c", (dir / "rollguard.toml").string()}, (dir / "out").string(),
                   (dir / "err").string(), {{"NOTIFY_SOCKET", socket_path}, {"WATCHDOG_USEC", "400000"}});

    const auto ready = socket.receive();
    INFO(readFile(dir / "err"));
    REQUIRE(ready);
    CHECK(ready->rfind("READY=1\n", 0) == 0);
    CHECK(ready->find("STATUS=running: 1 source(s), 1 rule(s), listening on 127.0.0.1:" + std::to_string(port)) !=
          std::string::npos);
    // READY=1 means the listener is up.
    CHECK(httpGet(port, "/healthz").status == 200);

    for (int i = 0; i < 5; ++i) {
        CHECK(socket.receive() == std::optional<std::string>("WATCHDOG=1"));
    }
    CHECK(readFile(dir / "err").find("systemd watchdog: 400 ms; the tick loop pings every 200 ms") !=
          std::string::npos);

    // SIGHUP reloads: RELOADING=1 (with the monotonic time systemd wants), then READY=1.
    daemon.signal(SIGHUP);
    const auto reloading = socket.receiveContaining("RELOADING=1");
    REQUIRE(reloading);
    CHECK(reloading->find("MONOTONIC_USEC=") != std::string::npos);
    const auto ready_again = socket.receiveContaining("READY=1");
    REQUIRE(ready_again);
    CHECK(ready_again->find("STATUS=running: 1 source(s), 1 rule(s)") != std::string::npos);
    CHECK(socket.receiveContaining("WATCHDOG=1"));
    CHECK(daemon.running());

    daemon.signal(SIGTERM);
    const auto stopping = socket.receiveContaining("STOPPING=1");
    REQUIRE(stopping);
    CHECK(stopping->rfind("STOPPING=1", 0) == 0);
    CHECK(daemon.wait(20s) == 0);
    CHECK(readFile(dir / "err").find("stopped") != std::string::npos);
}

TEST_CASE("a stop waiting on a hanging hook is bounded by --stop-timeout and still exits 0",
          "[systemd][integration]") {
    TempDir dir;
    const std::string d = dir.path().string();
    writeFile(dir / "app.log", "");
    const ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    const std::uint16_t port = reserved.port();
    writeFile(dir / "rollguard.toml",
              "[agent]\nstate_dir = \"" + d + "/state\"\nlisten = \"127.0.0.1:" + std::to_string(port) +
                  "\"\n\n[[source]]\nname = \"app\"\ntype = \"json_log\"\npaths = [\"" + d +
                  "/app.log\"]\nread_from = \"beginning\"\nerror = { field = \"status\", gte = 500 }\n\n"
                  "[[rule]]\nname = \"errors\"\nsource = \"app\"\nseverity = \"critical\"\nmetric = \"error_ratio\"\n"
                  "above = 0.5\nwindow = \"1m\"\nmin_samples = 5\nhooks = [\"hang\"]\n\n"
                  "[[hook]]\nname = \"hang\"\ntype = \"script\"\ntimeout = \"120s\"\n"
                  "command = [\"/bin/sh\", \"-c\", 'echo $$ > hang.pid; sleep 120']\nworkdir = \"" +
                  d + "\"\n");
    Process daemon({ROLLGUARD_BIN, "run", "-c", (dir / "rollguard.toml").string(), "--stop-timeout", "1"},
                   (dir / "out").string(), (dir / "err").string());
    REQUIRE(eventually([&] { return httpGet(port, "/healthz").status == 200; }, 10s));
    std::string errors;
    for (int i = 0; i < 20; ++i) {
        errors += "{\"status\":503}\n";
    }
    appendFile(dir / "app.log", errors);
    REQUIRE(eventually([&] { return fs::exists(dir / "hang.pid") && !readFile(dir / "hang.pid").empty(); }, 15s));

    daemon.signal(SIGTERM);
    const auto status = daemon.wait(30s);
    const std::string hang_pid = readFile(dir / "hang.pid");
    // The script has its own process group and outlives the agent (under systemd the
    // unit's control group is killed after the main process exits).
    ::kill(-std::stoi(hang_pid), SIGKILL);
    ::kill(std::stoi(hang_pid), SIGKILL);
    INFO(readFile(dir / "err"));
    CHECK(status == 0);
    CHECK(readFile(dir / "err").find("stop took longer than 1000 ms; exiting now") != std::string::npos);
    // The state was written before the hooks were waited for.
    CHECK(fs::exists(dir / "state" / "rules.state"));
}

TEST_CASE("systemd-analyze verify accepts the shipped unit", "[systemd][integration]") {
    const auto analyze = findSystemdAnalyze();
    if (!analyze) {
        WARN("systemd-analyze is not installed (package systemd): unit not verified");
        return;
    }
    TempDir dir;
    const std::string unit = configureUnit(dir);
    const auto [code, out] = runCommand({*analyze, "verify", unit}, 60s);
    INFO(out);
    CHECK(code == 0);
    CHECK(out.empty());
}

TEST_CASE("systemd-analyze security rates the shipped unit at exposure 3.0 or better", "[systemd][integration]") {
    const auto analyze = findSystemdAnalyze();
    if (!analyze) {
        WARN("systemd-analyze is not installed (package systemd): exposure not measured");
        return;
    }
    TempDir dir;
    const std::string unit = configureUnit(dir);
    const auto [code, out] = runCommand({*analyze, "security", "--offline=true", "--no-pager", unit}, 60s);
    INFO(out);
    if (out.find("--offline") != std::string::npos &&
        (out.find("unrecognized") != std::string::npos || out.find("Unknown") != std::string::npos)) {
        WARN("this systemd-analyze has no --offline (systemd >= 250 has it): exposure not measured");
        return;
    }
    REQUIRE(code == 0);
    const std::string marker = "Overall exposure level for rollguard.service: ";
    const auto at = out.find(marker);
    REQUIRE(at != std::string::npos);
    const double exposure = std::strtod(out.c_str() + at + marker.size(), nullptr);
    std::cout << "systemd-analyze security --offline=true: overall exposure level " << exposure << "\n";
    CHECK(exposure > 0.0);
    CHECK(exposure <= 3.0);
}
