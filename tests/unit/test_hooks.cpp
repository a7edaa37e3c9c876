#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "final_result.h"
#include "http_receiver.h"
#include "process.h"
#include "rollguard/agent/hooks.h"
#include "temp_dir.h"

using namespace std::chrono_literals;
using rollguard::agent::BreachEvent;
using rollguard::agent::breachToEnv;
using rollguard::agent::breachToJson;
using rollguard::agent::Hook;
using rollguard::agent::HookConfig;
using rollguard::agent::HookResult;
using rollguard::agent::HookRunner;
using rollguard::agent::HookType;
using rollguard::agent::makeHook;
using rollguard::testing::eventually;
using rollguard::testing::HttpReceiver;
using rollguard::testing::readFile;
using rollguard::testing::ReservedPort;
using rollguard::testing::TempDir;

namespace {

BreachEvent sampleEvent() {
    BreachEvent e;
    e.rule = "checkout-p99";
    e.severity = "critical";
    e.state = "firing";
    e.source = "api";
    e.metric = "p99";
    e.value = 0.412;
    e.threshold = 0.2;
    e.comparison = "above";
    e.samples = 1234;
    e.window = 30s;
    e.for_ = 500ms;
    e.since = rollguard::rules::TimePoint{1'700'000'000s} + 123ms;
    e.fired_at = rollguard::rules::TimePoint{1'700'000'030s};
    e.host = "web-1";
    e.summary = "p99 412ms > 200ms over 30s";
    return e;
}

const std::string kSampleBreachJson =
    R"({"rule":"checkout-p99","severity":"critical","state":"firing","source":"api","metric":"p99",)"
    R"("value":0.412,"threshold":0.2,"comparison":"above","samples":1234,"window_seconds":30,)"
    R"("for_seconds":0.5,"since":"2023-11-14T22:13:20.123Z","fired_at":"2023-11-14T22:13:50.000Z",)"
    R"("host":"web-1","summary":"p99 412ms > 200ms over 30s","description":""})";

// What the webhook (json format) sends: the breach plus labels, group and incident id.
const std::string kSampleJson = kSampleBreachJson.substr(0, kSampleBreachJson.size() - 1) +
                                R"(,"labels":{},"group":"","incident_id":"256b1550d5c5261c"})";

HookConfig webhookConfig(const std::string& url) {
    HookConfig c;
    c.name = "page";
    c.type = HookType::Webhook;
    c.url = url;
    c.timeout = 2s;
    c.retries = 3;
    c.retry_backoff = 10ms;
    return c;
}

HookConfig scriptConfig(std::vector<std::string> command) {
    HookConfig c;
    c.name = "undo";
    c.type = HookType::Script;
    c.command = std::move(command);
    c.timeout = 5s;
    c.retries = 0;  // the loader's default for scripts (HookConfig's is the webhooks' 3)
    return c;
}

// A hook environment whose sleeps are recorded instead of slept.
struct FakeSleeps {
    std::vector<std::chrono::nanoseconds> slept;
    rollguard::agent::HookEnvironment environment() {
        rollguard::agent::HookEnvironment e;
        e.sleep = [this](std::chrono::nanoseconds d) { slept.push_back(d); };
        e.random01 = [] { return 0.5; };
        return e;
    }
};

// The lines of `env` output as NAME -> value.
std::map<std::string, std::string> parseEnvOutput(const std::string& message) {
    std::map<std::string, std::string> vars;
    const std::string prefix = "exit status 0: ";
    REQUIRE(message.rfind(prefix, 0) == 0);
    std::size_t pos = prefix.size();
    while (pos < message.size()) {
        std::size_t end = message.find('\n', pos);
        if (end == std::string::npos) {
            end = message.size();
        }
        const std::string line = message.substr(pos, end - pos);
        const auto eq = line.find('=');
        if (eq != std::string::npos) {
            vars[line.substr(0, eq)] = line.substr(eq + 1);
        }
        pos = end + 1;
    }
    return vars;
}

/// The hook's final result: a webhook's background retries included.
HookResult runHook(const HookConfig& config, const BreachEvent& event = sampleEvent()) {
    auto hook = makeHook(config);
    REQUIRE(hook);
    return rollguard::testing::finalResult(*hook, event);
}


// Dead means gone or a zombie waiting for a reaper we do not control (PID 1 here).
bool processGone(pid_t pid) {
    if (::kill(pid, 0) == -1 && errno == ESRCH) {
        return true;
    }
    try {
        const std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
        const auto close = stat.rfind(')');
        return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
    } catch (const std::exception&) {
        return true;
    }
}

bool waitGone(pid_t pid) {
    return eventually([&] { return processGone(pid); });
}

pid_t readPid(const std::filesystem::path& p) {
    pid_t pid = -1;
    const bool written = eventually([&] {
        try {
            const std::string text = readFile(p);
            if (!text.empty() && text.back() == '\n') {
                pid = static_cast<pid_t>(std::stol(text));
                return true;
            }
        } catch (const std::exception&) {
        }
        return false;
    });
    if (!written) {
        FAIL("no pid in " << p);
    }
    return pid;
}

}  // namespace

// ---- breach rendering -------------------------------------------------------------

TEST_CASE("breachToJson renders the generic body", "[hooks][breach]") {
    CHECK(breachToJson(sampleEvent()) == kSampleBreachJson);
}

TEST_CASE("breachToJson escapes strings and nulls non-finite numbers", "[hooks][breach]") {
    BreachEvent e;
    e.rule = "a\"b\\c\nd\te\x01\x1f";
    e.summary = "caf\xc3\xa9 \xe2\x86\x92 ok";  // valid UTF-8 passes through
    e.description = std::string("bad\xff\xc3") + "end";  // invalid bytes become U+FFFD
    e.value = std::numeric_limits<double>::quiet_NaN();
    e.threshold = -std::numeric_limits<double>::infinity();
    e.samples = -1;
    e.since = rollguard::rules::TimePoint{-1ms};
    const std::string json = breachToJson(e);
    CHECK(json ==
          R"({"rule":"a\"b\\c\nd\te\u0001\u001f","severity":"","state":"","source":"","metric":"",)"
          R"("value":null,"threshold":null,"comparison":"","samples":-1,"window_seconds":0,"for_seconds":0,)"
          R"("since":"1969-12-31T23:59:59.999Z","fired_at":"1970-01-01T00:00:00.000Z","host":"",)"
          "\"summary\":\"caf\xc3\xa9 \xe2\x86\x92 ok\",\"description\":\"bad\\ufffd\\ufffdend\"}");
}

TEST_CASE("breachToJson prints doubles in their shortest exact form", "[hooks][breach]") {
    BreachEvent e;
    e.value = 0.1 + 0.2;
    e.threshold = 1e-5;
    e.window = std::chrono::nanoseconds{1};
    const std::string json = breachToJson(e);
    CHECK(json.find(R"("value":0.30000000000000004,)") != std::string::npos);
    CHECK(json.find(R"("threshold":1e-05,)") != std::string::npos);
    CHECK(json.find(R"("window_seconds":1e-09,)") != std::string::npos);
}

TEST_CASE("breachToEnv lists the breach variables", "[hooks][breach]") {
    auto e = sampleEvent();
    e.value = std::numeric_limits<double>::infinity();
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"ROLLGUARD_RULE", "checkout-p99"},
        {"ROLLGUARD_SEVERITY", "critical"},
        {"ROLLGUARD_STATE", "firing"},
        {"ROLLGUARD_SOURCE", "api"},
        {"ROLLGUARD_METRIC", "p99"},
        {"ROLLGUARD_VALUE", "+Inf"},
        {"ROLLGUARD_THRESHOLD", "0.2"},
        {"ROLLGUARD_COMPARISON", "above"},
        {"ROLLGUARD_SAMPLES", "1234"},
        {"ROLLGUARD_WINDOW_SECONDS", "30"},
        {"ROLLGUARD_FOR_SECONDS", "0.5"},
        {"ROLLGUARD_SINCE", "2023-11-14T22:13:20.123Z"},
        {"ROLLGUARD_FIRED_AT", "2023-11-14T22:13:50.000Z"},
        {"ROLLGUARD_HOST", "web-1"},
        {"ROLLGUARD_SUMMARY", "p99 412ms > 200ms over 30s"},
        {"ROLLGUARD_INCIDENT_ID", rollguard::agent::incidentId(e)},
        {"ROLLGUARD_REASON", ""},
        {"ROLLGUARD_STEPS", "[]"},
        {"ROLLGUARD_STEPS_FAILED", "0"},
    };
    CHECK(breachToEnv(e) == expected);
}

TEST_CASE("breachToEnv carries the earlier steps as JSON", "[hooks][breach]") {
    auto e = sampleEvent();
    e.steps = {{"env", "ok", "set A=0 in /x.env"}, {"restart", "failed", "exit status 1: \"boom\""}};
    e.reason = "bad canary";
    std::map<std::string, std::string> env;
    for (const auto& [k, v] : breachToEnv(e)) {
        env[k] = v;
    }
    CHECK(env["ROLLGUARD_STEPS"] ==
          R"([{"hook":"env","status":"ok","message":"set A=0 in /x.env"},)"
          R"({"hook":"restart","status":"failed","message":"exit status 1: \"boom\""}])");
    CHECK(env["ROLLGUARD_STEPS_FAILED"] == "1");
    CHECK(env["ROLLGUARD_REASON"] == "bad canary");
}

// ---- webhook ----------------------------------------------------------------------

TEST_CASE("webhook POSTs the breach JSON with its headers", "[hooks][webhook]") {
    HttpReceiver receiver;
    auto config = webhookConfig(receiver.url("/hooks/rollback?x=1"));
    config.headers = {{"X-Token", "s3cret"}};
    const auto result = runHook(config);
    CHECK(result.ok);
    CHECK(result.attempts == 1);
    CHECK(result.message == "HTTP 200");
    const auto requests = receiver.requests();
    REQUIRE(requests.size() == 1);
    const auto& r = requests[0];
    CHECK(r.method == "POST");
    CHECK(r.target == "/hooks/rollback?x=1");
    CHECK(r.body == kSampleJson);
    CHECK(r.header("content-type") == "application/json");
    CHECK(r.header("x-token") == "s3cret");
    CHECK(r.header("user-agent").rfind("rollguard/", 0) == 0);
}

TEST_CASE("webhook retries 503 with backoff until it succeeds", "[hooks][webhook]") {
    HttpReceiver receiver;
    receiver.queueStatuses({503, 503});
    const auto result = runHook(webhookConfig(receiver.url()));
    CHECK(result.ok);
    CHECK(result.attempts == 3);
    CHECK(result.message == "HTTP 200 after 3 attempts");
    CHECK(receiver.requests().size() == 3);
}

TEST_CASE("webhook retries 429 and gives up after its retries", "[hooks][webhook]") {
    HttpReceiver receiver;
    receiver.setStatus(429);
    auto config = webhookConfig(receiver.url());
    config.retries = 2;
    const auto result = runHook(config);
    CHECK_FALSE(result.ok);
    CHECK(result.attempts == 3);
    CHECK(result.message == "HTTP 429: 429 Too Many Requests after 3 attempts");
    CHECK(receiver.requests().size() == 3);
}

TEST_CASE("webhook does not retry a 4xx", "[hooks][webhook]") {
    HttpReceiver receiver;
    receiver.setStatus(400);
    const auto result = runHook(webhookConfig(receiver.url()));
    CHECK_FALSE(result.ok);
    CHECK(result.attempts == 1);
    CHECK(result.message == "HTTP 400: 400 Bad Request (not retried)");
    CHECK(receiver.requests().size() == 1);
}

TEST_CASE("webhook reports a refused connection after its retries", "[hooks][webhook]") {
    ReservedPort port;  // refused: bound, never listening, and nobody else's
    auto config = webhookConfig(port.url());
    config.retries = 2;
    const auto result = runHook(config);
    CHECK_FALSE(result.ok);
    CHECK(result.attempts == 3);
    CHECK(result.message.find("after 3 attempts") != std::string::npos);
    CHECK(result.message.find("onnect") != std::string::npos);
}

TEST_CASE("webhook gives up on a receiver slower than the timeout", "[hooks][webhook]") {
    // The receiver holds its answer for longer than any test runs (its destructor ends
    // the wait): a hook that waited for it instead of giving up would hit the test's
    // timeout. A result that is a failure saying "timed out" shows the give-up, whatever
    // the machine's speed; no elapsed-time bound is needed.
    HttpReceiver receiver;
    receiver.setDelay(10min);
    auto config = webhookConfig(receiver.url());
    config.timeout = 200ms;
    config.retries = 0;
    const auto result = runHook(config);
    CHECK_FALSE(result.ok);
    CHECK(result.attempts == 1);
    CHECK(result.message.find("imed out") != std::string::npos);
}

TEST_CASE("webhook refuses non-HTTP URLs and bad headers", "[hooks][webhook]") {
    auto file_url = webhookConfig("file:///etc/passwd");
    const auto refused = runHook(file_url);
    CHECK_FALSE(refused.ok);
    CHECK(refused.attempts == 1);
    CHECK(refused.message.find("(not retried)") != std::string::npos);

    HttpReceiver receiver;
    auto injected = webhookConfig(receiver.url());
    injected.headers = {{"X-A", "1\r\nX-B: 2"}};
    const auto bad = runHook(injected);
    CHECK_FALSE(bad.ok);
    CHECK(bad.message == "invalid header 'X-A'");
    CHECK(receiver.requests().empty());
}

TEST_CASE("http receiver reads chunked bodies", "[hooks][webhook]") {
    HttpReceiver receiver;
    receiver.setStatus(202);
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(receiver.port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    const std::string req =
        "PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
    REQUIRE(::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
    std::string reply;
    char buf[512];
    ssize_t n = 0;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) {
        reply.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    CHECK(reply.rfind("HTTP/1.1 202 Accepted\r\n", 0) == 0);
    CHECK(reply.find("Connection: close\r\n") != std::string::npos);
    REQUIRE(receiver.waitForRequests(1, 1s));
    const auto r = receiver.requests().at(0);
    CHECK(r.method == "PUT");
    CHECK(r.target == "/c");
    CHECK(r.header("host") == "x");
    CHECK(r.body == "hello, world");
}

// ---- script -----------------------------------------------------------------------

TEST_CASE("script arguments are passed literally, never through a shell", "[hooks][script]") {
    TempDir dir;
    const auto marker = dir / "pwned";
    const std::string tricky = "$(touch " + marker.string() + ")";
    const auto result = runHook(scriptConfig({"printf", "%s|", "two words", tricky, "; rm -rf x"}));
    CHECK(result.ok);
    CHECK(result.message == "exit status 0: two words|" + tricky + "|; rm -rf x|");
    CHECK_FALSE(std::filesystem::exists(marker));
}

TEST_CASE("script gets the breach, its own env and the inherit_env names", "[hooks][script]") {
    REQUIRE(::setenv("ROLLGUARD_TEST_PARENT", "inherited", 1) == 0);
    auto config = scriptConfig({"/bin/sh", "-c", R"(echo "$ROLLGUARD_RULE $ROLLGUARD_VALUE $EXTRA $ROLLGUARD_TEST_PARENT")"});
    config.env = {{"EXTRA", "from config"}};
    config.inherit_env = {"ROLLGUARD_TEST_PARENT"};
    const auto result = runHook(config);
    CHECK(result.ok);
    CHECK(result.message == "exit status 0: checkout-p99 0.412 from config inherited");
    ::unsetenv("ROLLGUARD_TEST_PARENT");
}

TEST_CASE("script does not see the agent's unlisted environment", "[hooks][script]") {
    // A token in the agent's environment (for a webhook, say) must not reach scripts.
    REQUIRE(::setenv("ROLLGUARD_TEST_SECRET", "s3cret", 1) == 0);
    REQUIRE(::setenv("ROLLGUARD_TEST_LISTED", "listed", 1) == 0);
    REQUIRE(::setenv("LANG", "C.UTF-8", 1) == 0);
    auto config = scriptConfig({"/usr/bin/env"});
    config.inherit_env = {"ROLLGUARD_TEST_LISTED", "ROLLGUARD_TEST_UNSET_NAME"};
    config.env = {{"LANG", "C"}};
    const auto result = runHook(config);
    ::unsetenv("ROLLGUARD_TEST_SECRET");
    ::unsetenv("ROLLGUARD_TEST_LISTED");
    REQUIRE(result.ok);
    INFO(result.message);
    const auto vars = parseEnvOutput(result.message);
    CHECK(vars.count("ROLLGUARD_TEST_SECRET") == 0);
    CHECK(result.message.find("s3cret") == std::string::npos);
    CHECK(vars.count("ROLLGUARD_TEST_UNSET_NAME") == 0);
    CHECK(vars.at("ROLLGUARD_TEST_LISTED") == "listed");
    CHECK(vars.at("LANG") == "C");  // env wins over the inherited value
    CHECK(vars.at("ROLLGUARD_RULE") == "checkout-p99");
    CHECK(vars.at("PATH") == std::getenv("PATH"));
    const std::vector<std::string> allowed{"PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME",
                                           "ROLLGUARD_TEST_LISTED"};
    for (const auto& [name, value] : vars) {
        INFO(name);
        const bool breach = name.rfind("ROLLGUARD_", 0) == 0 && name.rfind("ROLLGUARD_TEST_", 0) != 0;
        CHECK((breach || std::find(allowed.begin(), allowed.end(), name) != allowed.end()));
    }
}

TEST_CASE("script gets a default PATH when the agent has none", "[hooks][script]") {
    const char* saved = std::getenv("PATH");
    const std::string path = saved != nullptr ? saved : "";
    REQUIRE(::unsetenv("PATH") == 0);
    const auto result = runHook(scriptConfig({"/usr/bin/env"}));
    if (saved != nullptr) {
        ::setenv("PATH", path.c_str(), 1);
    }
    REQUIRE(result.ok);
    CHECK(parseEnvOutput(result.message).at("PATH") == "/usr/local/bin:/usr/bin:/bin");
}

TEST_CASE("script runs in its workdir", "[hooks][script]") {
    TempDir dir;
    auto config = scriptConfig({"/bin/pwd"});
    config.workdir = dir.path().string();
    const auto result = runHook(config);
    CHECK(result.ok);
    CHECK(result.message == "exit status 0: " + std::filesystem::canonical(dir.path()).string());

    config.workdir = (dir / "missing").string();
    const auto missing = runHook(config);
    CHECK_FALSE(missing.ok);
    CHECK(missing.message == "cannot change to working directory '" + config.workdir + "': No such file or directory");

    // Without workdir: the agent's working directory.
    const auto here = runHook(scriptConfig({"/bin/pwd"}));
    CHECK(here.message == "exit status 0: " + std::filesystem::current_path().string());
}

TEST_CASE("script with an unknown user or group fails every run clearly", "[hooks][script]") {
    auto config = scriptConfig({"/bin/true"});
    config.user = "rollguard-no-such-user";
    auto hook = makeHook(config);
    for (int i = 0; i < 2; ++i) {
        const auto result = hook->run(sampleEvent());
        CHECK_FALSE(result.ok);
        CHECK(result.message == "unknown user 'rollguard-no-such-user'");
    }
    config.user.clear();
    config.group = "rollguard-no-such-group";
    const auto group = runHook(config);
    CHECK_FALSE(group.ok);
    CHECK(group.message == "unknown group 'rollguard-no-such-group'");
}

TEST_CASE("script as the agent's own user just runs", "[hooks][script]") {
    const passwd* me = ::getpwuid(::geteuid());
    REQUIRE(me != nullptr);
    auto config = scriptConfig({"id", "-u"});
    config.user = me->pw_name;
    const auto result = runHook(config);
    CHECK(result.ok);
    CHECK(result.message == "exit status 0: " + std::to_string(::geteuid()));
}

TEST_CASE("script drops privileges to the configured user and group", "[hooks][script]") {
    if (::geteuid() != 0) {
        WARN("not running as root: dropping to another user cannot be tested here");
        return;
    }
    const passwd* nobody = ::getpwnam("nobody");
    REQUIRE(nobody != nullptr);
    const uid_t uid = nobody->pw_uid;
    const gid_t gid = nobody->pw_gid;
    const group* gr = ::getgrgid(gid);
    REQUIRE(gr != nullptr);
    const std::string group_name = gr->gr_name;

    auto config = scriptConfig({"/bin/sh", "-c", "id -u; id -g; id -G; echo \"$HOME $USER $LOGNAME\""});
    config.user = "nobody";
    const auto as_nobody = runHook(config);
    CHECK(as_nobody.ok);
    // Supplementary groups are nobody's own (root's group 0 is gone).
    CHECK(as_nobody.message == "exit status 0: " + std::to_string(uid) + "\n" + std::to_string(gid) + "\n" +
                                   std::to_string(gid) + "\n" + nobody->pw_dir + " nobody nobody");

    config.user.clear();
    config.group = group_name;
    config.command = {"/bin/sh", "-c", "id -u; id -g; id -G"};
    const auto group_only = runHook(config);
    CHECK(group_only.ok);
    CHECK(group_only.message == "exit status 0: 0\n" + std::to_string(gid) + "\n" + std::to_string(gid));

    // The directory is entered after the drop: one only root may enter is refused.
    TempDir dir;
    std::filesystem::permissions(dir.path(), std::filesystem::perms::owner_all);
    config.user = "nobody";
    config.group.clear();
    config.command = {"/bin/pwd"};
    config.workdir = dir.path().string();
    const auto denied = runHook(config);
    CHECK_FALSE(denied.ok);
    CHECK(denied.message == "cannot change to working directory '" + config.workdir + "': Permission denied");
}

namespace {

// The message of one run of `config` by an unprivileged agent: as root, in a child process
// that first becomes nobody (the hook is built there, as the agent would build it).
std::string runUnprivileged(const HookConfig& config) {
    if (::geteuid() != 0) {
        return makeHook(config)->run(sampleEvent()).message;
    }
    const passwd* nobody = ::getpwnam("nobody");
    REQUIRE(nobody != nullptr);
    const uid_t uid = nobody->pw_uid;
    const gid_t gid = nobody->pw_gid;
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) {
            ::_exit(2);
        }
        const std::string message = makeHook(config)->run(sampleEvent()).message;
        const ssize_t n = ::write(fds[1], message.data(), message.size());
        ::_exit(n == static_cast<ssize_t>(message.size()) ? 0 : 3);
    }
    ::close(fds[1]);
    std::string text;
    char buf[4096];
    ssize_t n = 0;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) {
        text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    return text;
}

}  // namespace

TEST_CASE("script user change without the privilege fails clearly", "[hooks][script]") {
    auto config = scriptConfig({"/bin/true"});
    config.user = "root";
    CHECK(runUnprivileged(config) == "cannot drop privileges to user root: Operation not permitted");
    config.user.clear();
    config.group = "root";
    CHECK(runUnprivileged(config) == "cannot drop privileges to group root: Operation not permitted");

    // Naming the user the agent already runs as is no change: the script just runs.
    const passwd* me = ::getpwuid(::geteuid() == 0 ? ::getpwnam("nobody")->pw_uid : ::geteuid());
    REQUIRE(me != nullptr);
    const std::string own_name = me->pw_name;
    const std::string own_uid = std::to_string(me->pw_uid);
    config = scriptConfig({"id", "-u"});
    config.user = own_name;
    CHECK(runUnprivileged(config) == "exit status 0: " + own_uid);
}

TEST_CASE("script retries a failing run with backoff when configured", "[hooks][script]") {
    TempDir dir;
    const auto counter = dir / "runs";
    const std::string count_runs =
        R"(n=$(cat "$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$1"; echo "run $n"; [ "$n" -ge "$2" ])";
    FakeSleeps sleeps;
    auto config = scriptConfig({"/bin/sh", "-c", count_runs, "sh", counter.string(), "2"});
    config.retries = 3;
    config.retry_backoff = 100ms;
    auto hook = makeHook(config, sleeps.environment());
    const auto second_time = hook->run(sampleEvent());
    CHECK(second_time.ok);
    CHECK(second_time.message == "exit status 0 after 2 attempts: run 2");
    CHECK(second_time.attempts == 2);
    CHECK(sleeps.slept == std::vector<std::chrono::nanoseconds>{50ms});  // 0.5 * 100ms

    SECTION("gives up after its retries") {
        std::filesystem::remove(counter);
        sleeps.slept.clear();
        config.command = {"/bin/sh", "-c", count_runs, "sh", counter.string(), "99"};
        config.retries = 2;
        const auto failed = makeHook(config, sleeps.environment())->run(sampleEvent());
        CHECK_FALSE(failed.ok);
        CHECK(failed.message == "exit status 1 after 3 attempts: run 3");
        CHECK(failed.attempts == 3);
        CHECK(sleeps.slept == std::vector<std::chrono::nanoseconds>{50ms, 100ms});
    }
    SECTION("a timeout is retried too") {
        sleeps.slept.clear();
        config.command = {"/bin/sh", "-c", "echo started; exec sleep 300"};
        config.retries = 1;
        config.timeout = 100ms;
        const auto timed_out = makeHook(config, sleeps.environment())->run(sampleEvent());
        CHECK_FALSE(timed_out.ok);
        // Whether the shell got to its echo within 100 ms depends on the machine's load:
        // the output is not part of the check.
        CHECK(timed_out.message.rfind("timed out after 0.1s after 2 attempts", 0) == 0);
        CHECK(timed_out.attempts == 2);
        CHECK(sleeps.slept.size() == 1);
    }
    SECTION("a script that cannot start is not retried") {
        sleeps.slept.clear();
        config.command = {"/nonexistent/rollguard-undo"};
        const auto missing = makeHook(config, sleeps.environment())->run(sampleEvent());
        CHECK_FALSE(missing.ok);
        CHECK(missing.message == "cannot execute '/nonexistent/rollguard-undo': No such file or directory");
        CHECK(missing.attempts == 1);
        CHECK(sleeps.slept.empty());
    }
    SECTION("without retries a failure is final") {
        std::filesystem::remove(counter);
        sleeps.slept.clear();
        config.retries = 0;
        const auto once = makeHook(config, sleeps.environment())->run(sampleEvent());
        CHECK_FALSE(once.ok);
        CHECK(once.message == "exit status 1: run 1");
        CHECK(once.attempts == 1);
        CHECK(sleeps.slept.empty());
    }
}

TEST_CASE("script failures are reported with status and output", "[hooks][script]") {
    const auto failed = runHook(scriptConfig({"/bin/sh", "-c", "echo out; echo oops >&2; exit 3"}));
    CHECK_FALSE(failed.ok);
    CHECK(failed.message == "exit status 3: out\noops");

    const auto killed = runHook(scriptConfig({"/bin/sh", "-c", "kill -9 $$"}));
    CHECK_FALSE(killed.ok);
    CHECK(killed.message == "killed by signal 9 (SIGKILL)");
}

TEST_CASE("script reports a missing binary clearly", "[hooks][script]") {
    const auto missing = runHook(scriptConfig({"/nonexistent/rollguard-undo"}));
    CHECK_FALSE(missing.ok);
    CHECK(missing.message == "cannot execute '/nonexistent/rollguard-undo': No such file or directory");

    const auto not_in_path = runHook(scriptConfig({"rollguard-no-such-command"}));
    CHECK_FALSE(not_in_path.ok);
    CHECK(not_in_path.message == "cannot execute 'rollguard-no-such-command': not found in PATH");

    TempDir dir;
    const auto not_exec = dir / "plain.txt";
    rollguard::testing::writeFile(not_exec, "echo hi\n");
    const auto denied = runHook(scriptConfig({not_exec.string()}));
    CHECK_FALSE(denied.ok);
    CHECK(denied.message == "cannot execute '" + not_exec.string() + "': Permission denied");
}

TEST_CASE("script timeout kills the whole process group", "[hooks][script]") {
    // The timeout must leave the shell time to start its background child and say so on
    // a loaded machine too (an earlier timeout would find no child to check): 3 s.
    TempDir dir;
    const auto pid_file = dir / "bg.pid";
    auto config = scriptConfig(
        {"/bin/sh", "-c", "sleep 300 & echo $! > \"$1\"; echo started; wait", "sh", pid_file.string()});
    config.timeout = 3s;
    const auto result = runHook(config);
    CHECK_FALSE(result.ok);
    // Not waiting for the background child (which holds the output pipe open for 300 s)
    // is shown by the run having returned with the timeout's message at all.
    CHECK(result.message == "timed out after 3s: started");
    const pid_t background = readPid(pid_file);
    CHECK(waitGone(background));
}

TEST_CASE("script that ignores SIGTERM is killed after the grace period", "[hooks][script]") {
    TempDir dir;
    const auto pid_file = dir / "self.pid";
    auto config = scriptConfig({"/bin/sh", "-c", "trap '' TERM; echo $$ > \"$1\"; while :; do sleep 0.05; done", "sh",
                                pid_file.string()});
    // Long enough for the shell to set its trap before the SIGTERM on a loaded machine
    // (else SIGTERM alone would end it, and the pid file might not exist).
    config.timeout = 3s;
    const auto result = runHook(config);
    CHECK_FALSE(result.ok);
    CHECK(result.message == "timed out after 3s");
    CHECK(waitGone(readPid(pid_file)));
}

TEST_CASE("script that leaves a background child does not wait for it", "[hooks][script]") {
    TempDir dir;
    const auto pid_file = dir / "bg.pid";
    // The child outlives the timeout by far: a hook that waited for it (or for the output
    // pipe it holds) would report "timed out", so a success shows it did not wait,
    // without a bound on the elapsed time.
    auto config = scriptConfig({"/bin/sh", "-c", "sleep 300 & echo $! > \"$1\"; echo done", "sh", pid_file.string()});
    config.timeout = 60s;
    const auto result = runHook(config);
    CHECK(result.ok);
    CHECK(result.message == "exit status 0: done");
    const pid_t background = readPid(pid_file);
    ::kill(background, SIGKILL);
}

TEST_CASE("script output keeps only the tail", "[hooks][script]") {
    const auto result = runHook(scriptConfig({"/bin/sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a; echo; echo END"}));
    CHECK(result.ok);
    CHECK(result.message.rfind("exit status 0: [...] aaa", 0) == 0);
    CHECK(result.message.size() <= 64 * 1024 + 32);
    CHECK(result.message.substr(result.message.size() - 4) == "\nEND");
}

// ---- runner -----------------------------------------------------------------------

namespace {

struct Recorded {
    std::string hook;
    std::string rule;
    bool ok;
    std::string message;
    std::thread::id thread;
    bool skipped = false;
};

class Recorder {
public:
    HookRunner::Callback callback() {
        return [this](const std::string& hook, const BreachEvent& e, const HookResult& r) {
            std::lock_guard lock(mutex_);
            results_.push_back({hook, e.rule, r.ok, r.message, std::this_thread::get_id(), r.skipped});
        };
    }
    std::vector<Recorded> results() const {
        std::lock_guard lock(mutex_);
        return results_;
    }

private:
    mutable std::mutex mutex_;
    std::vector<Recorded> results_;
};

class FakeHook final : public Hook {
public:
    explicit FakeHook(std::string name, bool throws = false) : name_(std::move(name)), throws_(throws) {}
    const std::string& name() const override { return name_; }
    HookType type() const override { return HookType::Script; }
    HookResult run(const BreachEvent& event) override {
        if (throws_) {
            throw std::runtime_error("boom");
        }
        std::this_thread::sleep_for(1ms);  // so that enqueue() races ahead of the worker
        HookResult r;
        r.ok = true;
        r.message = name_ + " ran for " + event.rule;
        return r;
    }

private:
    std::string name_;
    bool throws_;
};

BreachEvent eventFor(const std::string& rule) {
    BreachEvent e;
    e.rule = rule;
    return e;
}

}  // namespace

TEST_CASE("HookRunner runs each job's hooks in order off the calling thread", "[hooks][runner]") {
    Recorder recorder;
    HookRunner runner(recorder.callback());
    runner.add(std::make_unique<FakeHook>("a"));
    runner.add(std::make_unique<FakeHook>("b"));
    runner.add(std::make_unique<FakeHook>("thrower", true));
    runner.enqueue({"b", "missing", "a", "thrower"}, eventFor("r1"));
    runner.waitIdle();
    const auto results = recorder.results();
    REQUIRE(results.size() == 4);
    CHECK(results[0].hook == "b");
    CHECK(results[0].ok);
    CHECK(results[0].message == "b ran for r1");
    CHECK(results[1].hook == "missing");
    CHECK_FALSE(results[1].ok);
    CHECK(results[1].message == "unknown hook");
    CHECK(results[2].hook == "a");
    CHECK(results[2].message == "a ran for r1");
    CHECK(results[3].hook == "thrower");
    CHECK_FALSE(results[3].ok);
    CHECK(results[3].message == "hook threw: boom");
    for (const auto& r : results) {
        CHECK(r.thread != std::this_thread::get_id());
        CHECK(r.rule == "r1");
    }
}

TEST_CASE("HookRunner stop drains queued jobs, then reports late work as failed", "[hooks][runner]") {
    Recorder recorder;
    HookRunner runner(recorder.callback());
    runner.add(std::make_unique<FakeHook>("a"));
    for (int i = 0; i < 5; ++i) {
        runner.enqueue({"a"}, eventFor("r" + std::to_string(i)));
    }
    runner.stop();
    auto results = recorder.results();
    REQUIRE(results.size() == 5);
    // Five rules: five lanes, run side by side, so any order.
    std::vector<std::string> rules;
    for (const auto& r : results) {
        CHECK(r.ok);
        rules.push_back(r.rule);
    }
    std::sort(rules.begin(), rules.end());
    CHECK(rules == std::vector<std::string>{"r0", "r1", "r2", "r3", "r4"});
    runner.stop();  // idempotent
    runner.enqueue({"a"}, eventFor("late"));
    results = recorder.results();
    REQUIRE(results.size() == 6);
    CHECK(results[5].rule == "late");
    CHECK_FALSE(results[5].ok);
    CHECK(results[5].message == "hook runner is stopped");
    runner.waitIdle();  // returns at once when stopped
}

TEST_CASE("HookRunner destructor finishes queued work", "[hooks][runner]") {
    Recorder recorder;
    {
        HookRunner runner(recorder.callback());
        runner.add(std::make_unique<FakeHook>("a"));
        runner.enqueue({"a", "a"}, eventFor("r"));
    }
    CHECK(recorder.results().size() == 2);
}

TEST_CASE("HookRunner runs real hooks end to end", "[hooks][runner]") {
    TempDir dir;
    rollguard::testing::writeFile(dir / "app.env", "FLAG=1\n");
    HttpReceiver receiver;
    HookConfig env;
    env.name = "flag-off";
    env.type = HookType::EnvFile;
    env.path = (dir / "app.env").string();
    env.set = {{"FLAG", "0"}};
    env.backup = false;

    Recorder recorder;
    HookRunner runner(recorder.callback());
    runner.add(makeHook(env));
    runner.add(makeHook(webhookConfig(receiver.url())));
    runner.enqueue({"flag-off", "page"}, sampleEvent());
    runner.waitIdle();
    const auto results = recorder.results();
    REQUIRE(results.size() == 2);
    CHECK(results[0].ok);
    CHECK(results[1].ok);
    CHECK(results[1].message == "HTTP 200");
    CHECK(readFile(dir / "app.env") == "FLAG=0\n");
    REQUIRE(receiver.requests().size() == 1);
    // The notify step after the rollback step reports its outcome.
    const std::string steps = (dir / "app.env").string();
    CHECK(receiver.requests()[0].body ==
          kSampleJson.substr(0, kSampleJson.size() - 1) +
              R"(,"steps":[{"hook":"flag-off","status":"ok","message":"set FLAG=0 in )" + steps + R"("}]})");
}

namespace {

/// A hook that records that it ran and answers with a fixed outcome.
class FixedHook : public rollguard::agent::Hook {
public:
    FixedHook(std::string name, bool ok, std::vector<std::string>& log, std::mutex& mutex)
        : name_(std::move(name)), ok_(ok), log_(log), mutex_(mutex) {}
    const std::string& name() const override { return name_; }
    HookType type() const override { return HookType::Script; }
    rollguard::agent::HookResult run(const BreachEvent& event) override {
        std::lock_guard lock(mutex_);
        std::string seen;
        for (const auto& step : event.steps) {
            seen += step.hook + "=" + step.status + " ";
        }
        log_.push_back(name_ + " saw [" + seen + "]");
        rollguard::agent::HookResult r;
        r.ok = ok_;
        r.message = ok_ ? "fine" : "broke";
        return r;
    }

private:
    std::string name_;
    bool ok_;
    std::vector<std::string>& log_;
    std::mutex& mutex_;
};

}  // namespace

TEST_CASE("HookRunner hands each hook the earlier steps and honours run_if", "[hooks][runner]") {
    using rollguard::agent::RunIf;
    std::vector<std::string> log;
    std::mutex mutex;
    Recorder recorder;
    std::vector<std::string> started;
    HookRunner runner(recorder.callback(),
                      [&](const std::string& hook, const BreachEvent&) { started.push_back(hook); });
    runner.add(std::make_unique<FixedHook>("rewrite", true, log, mutex));
    runner.add(std::make_unique<FixedHook>("restart", false, log, mutex), RunIf::PreviousOk);
    runner.add(std::make_unique<FixedHook>("escalate", true, log, mutex), RunIf::PreviousFailed);
    runner.add(std::make_unique<FixedHook>("notify", true, log, mutex));

    SECTION("a failure skips previous_ok hooks after it and runs previous_failed ones") {
        runner.enqueue({"rewrite", "restart", "escalate", "notify"}, sampleEvent());
        runner.waitIdle();
        CHECK(log == std::vector<std::string>{"rewrite saw []", "restart saw [rewrite=ok ]",
                                              "escalate saw [rewrite=ok restart=failed ]",
                                              "notify saw [rewrite=ok restart=failed escalate=ok ]"});
        CHECK(started == std::vector<std::string>{"rewrite", "restart", "escalate", "notify"});
    }
    SECTION("without a failure, previous_failed hooks are skipped and reported so") {
        runner.enqueue({"rewrite", "escalate", "notify"}, sampleEvent());
        runner.waitIdle();
        CHECK(log == std::vector<std::string>{"rewrite saw []", "notify saw [rewrite=ok escalate=skipped ]"});
        CHECK(started == std::vector<std::string>{"rewrite", "notify"});
        const auto results = recorder.results();
        REQUIRE(results.size() == 3);
        CHECK(results[1].skipped);
        CHECK(results[1].ok);
        CHECK(results[1].message == "skipped: no earlier step failed (run_if = \"previous_failed\")");
    }
    SECTION("steps the caller brings (a resumed incident) count as earlier steps") {
        auto event = sampleEvent();
        event.steps = {{"rewrite", "failed", "broke"}};
        runner.enqueue({"restart", "notify"}, event);
        runner.waitIdle();
        CHECK(log == std::vector<std::string>{"notify saw [rewrite=failed restart=skipped ]"});
    }
}

// ---- {{rollout_percent}} ------------------------------------------------------------

TEST_CASE("breachToEnv adds the rollout percentages for a rollout event", "[hooks][breach][rollout]") {
    auto e = sampleEvent();
    const auto plain = breachToEnv(e);
    for (const auto& [name, value] : plain) {
        CHECK(name.rfind("ROLLGUARD_ROLLOUT_", 0) != 0);
    }
    e.rollout_percent = 25;
    e.rollout_previous_percent = 5;
    auto env = breachToEnv(e);
    REQUIRE(env.size() == plain.size() + 2);
    CHECK(env[plain.size()] == std::pair<std::string, std::string>{"ROLLGUARD_ROLLOUT_PERCENT", "25"});
    CHECK(env[plain.size() + 1] == std::pair<std::string, std::string>{"ROLLGUARD_ROLLOUT_PREVIOUS_PERCENT", "5"});
}

TEST_CASE("script gets rollout_percent in its arguments, env values and ROLLGUARD_ROLLOUT_PERCENT", "[hooks][script][rollout]") {
    auto config = scriptConfig({"/bin/sh", "-c",
                                R"(echo "$1|$PCT|$ROLLGUARD_ROLLOUT_PERCENT|$ROLLGUARD_ROLLOUT_PREVIOUS_PERCENT")", "sh",
                                "--percent={{rollout_percent}}"});
    config.env = {{"PCT", "{{rollout_percent}}%"}};
    auto e = sampleEvent();
    e.rollout_percent = 50;
    e.rollout_previous_percent = 25;
    const auto result = runHook(config, e);
    CHECK(result.ok);
    CHECK(result.message == "exit status 0: --percent=50|50%|50|25");
}

TEST_CASE("script whose values use rollout_percent fails on an event without one, without running", "[hooks][script][rollout]") {
    TempDir dir;
    const auto marker = dir / "ran";
    auto config = scriptConfig({"/usr/bin/touch", marker.string(), "{{rollout_percent}}"});
    const auto result = runHook(config);
    CHECK_FALSE(result.ok);
    CHECK(result.message == "{{rollout_percent}} is only set for [rollout] events: nothing changed");
    CHECK_FALSE(std::filesystem::exists(marker));
    // command[0] is not a value: the placeholder there is not filled (and not required).
    auto plain = scriptConfig({"/bin/echo", "ok"});
    CHECK(runHook(plain).ok);
}

// ---- lanes ------------------------------------------------------------------------

namespace {

/// A hook that blocks in run() until the test opens its gate: a hung receiver or script,
/// without time. Counts the runs in progress and the most at once.
class GateHook final : public Hook {
public:
    explicit GateHook(std::string name) : name_(std::move(name)) {}
    const std::string& name() const override { return name_; }
    HookType type() const override { return HookType::Webhook; }
    HookResult run(const BreachEvent& event) override {
        std::unique_lock lock(mutex_);
        ++running_;
        ++started_;
        most_ = std::max(most_, running_);
        started_rules_.push_back(event.rule + "/" + event.group + "/" + event.state);
        cv_.notify_all();
        cv_.wait(lock, [this] { return open_; });
        --running_;
        HookResult r;
        r.ok = true;
        r.message = "released";
        return r;
    }
    void open() {
        std::lock_guard lock(mutex_);
        open_ = true;
        cv_.notify_all();
    }
    bool waitStarted(int n) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, 60s, [&] { return started_ >= n; });
    }
    int running() const {
        std::lock_guard lock(mutex_);
        return running_;
    }
    int most() const {
        std::lock_guard lock(mutex_);
        return most_;
    }
    std::vector<std::string> startedRules() const {
        std::lock_guard lock(mutex_);
        return started_rules_;
    }

private:
    std::string name_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    bool open_ = false;
    int running_ = 0;
    int started_ = 0;
    int most_ = 0;
    std::vector<std::string> started_rules_;
};

/// A hook whose run returns `deferred` and whose final result the test sends; with
/// `complete_first` the final result is sent from inside run(), before run() returns
/// (the race a fast background delivery makes).
class DeferringHook final : public Hook {
public:
    DeferringHook(std::string name, bool complete_first) : name_(std::move(name)), complete_first_(complete_first) {}
    const std::string& name() const override { return name_; }
    HookType type() const override { return HookType::Webhook; }
    HookResult run(const BreachEvent& event) override {
        {
            std::lock_guard lock(mutex_);
            events_.push_back(event);
        }
        if (complete_first_) {
            finish(event, true);
        }
        HookResult r;
        r.deferred = true;
        r.message = "HTTP 503; retrying in the background";
        return r;
    }
    void finish(const BreachEvent& event, bool ok) {
        HookResult r;
        r.ok = ok;
        r.attempts = 2;
        r.message = ok ? "HTTP 200 after 2 attempts" : "HTTP 503 after 2 attempts";
        complete(event, r);
    }
    std::vector<BreachEvent> events() const {
        std::lock_guard lock(mutex_);
        return events_;
    }

private:
    std::string name_;
    bool complete_first_;
    mutable std::mutex mutex_;
    std::vector<BreachEvent> events_;
};

BreachEvent groupEvent(const std::string& rule, const std::string& group, const std::string& severity = "warning",
                       const std::string& state = "firing") {
    BreachEvent e = eventFor(rule);
    e.group = group;
    e.severity = severity;
    e.state = state;
    return e;
}

}  // namespace

TEST_CASE("HookRunner: a hung hook of one rule holds back no other rule's hooks", "[hooks][runner][lanes]") {
    Recorder recorder;
    HookRunner runner(recorder.callback());
    auto gate = std::make_unique<GateHook>("hung");
    GateHook& hung = *gate;
    runner.add(std::move(gate));
    runner.add(std::make_unique<FakeHook>("act"));
    runner.enqueue({"hung"}, groupEvent("warn", ""));
    REQUIRE(hung.waitStarted(1));
    // Another rule, and the same rule's other group: both run while "hung" blocks.
    runner.enqueue({"act"}, groupEvent("critical", "", "critical"));
    runner.enqueue({"act"}, groupEvent("warn", "pod-2"));
    REQUIRE(eventually([&] { return recorder.results().size() == 2; }, 60s));
    CHECK(hung.running() == 1);
    for (const auto& r : recorder.results()) {
        CHECK(r.hook == "act");
        CHECK(r.ok);
    }
    hung.open();
    runner.waitIdle();
    CHECK(recorder.results().size() == 3);
}

TEST_CASE("HookRunner: one lane's jobs keep their order", "[hooks][runner][lanes]") {
    Recorder recorder;
    HookRunner runner(recorder.callback());
    auto gate = std::make_unique<GateHook>("hung");
    GateHook& hung = *gate;
    runner.add(std::move(gate));
    runner.add(std::make_unique<FakeHook>("notify"));
    runner.enqueue({"hung", "notify"}, groupEvent("r", "g"));
    REQUIRE(hung.waitStarted(1));
    runner.enqueue({"notify"}, groupEvent("r", "g", "warning", "resolved"));
    hung.open();
    runner.waitIdle();
    const auto results = recorder.results();
    REQUIRE(results.size() == 3);
    CHECK(results[0].hook == "hung");
    CHECK(results[1].hook == "notify");
    CHECK(results[1].message == "notify ran for r");
    CHECK(results[2].hook == "notify");  // the resolve, after the fire's whole list
    CHECK(results[1].thread == results[2].thread);
}

TEST_CASE("HookRunner: a rule firing for many groups takes at most its share of lanes", "[hooks][runner][lanes]") {
    Recorder recorder;
    HookRunner runner(recorder.callback());
    auto gate = std::make_unique<GateHook>("hung");
    GateHook& hung = *gate;
    runner.add(std::move(gate));
    runner.add(std::make_unique<FakeHook>("act"));
    constexpr int kGroups = 12;
    for (int i = 0; i < kGroups; ++i) {
        runner.enqueue({"hung"}, groupEvent("per-pod", "pod-" + std::to_string(i)));
    }
    REQUIRE(hung.waitStarted(static_cast<int>(HookRunner::kMaxRunningLanesPerRule)));
    // Another rule is not behind the twelve groups.
    runner.enqueue({"act"}, groupEvent("other", "", "critical"));
    REQUIRE(eventually([&] { return recorder.results().size() == 1; }, 60s));
    CHECK(recorder.results()[0].hook == "act");
    CHECK(hung.running() == static_cast<int>(HookRunner::kMaxRunningLanesPerRule));
    CHECK(runner.queued() == kGroups);
    hung.open();
    runner.waitIdle();
    CHECK(recorder.results().size() == kGroups + 1);
    CHECK(hung.most() == static_cast<int>(HookRunner::kMaxRunningLanesPerRule));
    CHECK(runner.queued() == 0);
}

TEST_CASE("HookRunner: a full rule queue drops its oldest notification, never a rollback", "[hooks][runner][lanes]") {
    Recorder recorder;
    HookRunner runner(recorder.callback());
    auto gate = std::make_unique<GateHook>("hung");
    GateHook& hung = *gate;
    runner.add(std::move(gate));
    runner.add(std::make_unique<FakeHook>("act"));
    runner.enqueue({"hung"}, groupEvent("flappy", ""));
    REQUIRE(hung.waitStarted(1));  // running: no longer waiting
    constexpr int kMax = static_cast<int>(HookRunner::kMaxQueuedJobsPerRule);
    for (int i = 0; i < kMax + 3; ++i) {
        BreachEvent e = groupEvent("flappy", "");
        e.fired_at = rollguard::rules::TimePoint{std::chrono::seconds{i}};
        e.summary = "n" + std::to_string(i);
        runner.enqueue({"act"}, e);
    }
    CHECK(runner.dropped() == 3);
    // A rollback is kept even with the queue full; the notification after it drops one more.
    runner.enqueue({"act"}, groupEvent("flappy", "", "critical"));
    runner.enqueue({"act"}, groupEvent("flappy", ""));
    CHECK(runner.dropped() == 4);
    // Another rule's queue is its own.
    runner.enqueue({"act"}, groupEvent("calm", ""));
    CHECK(runner.dropped() == 4);
    {
        const auto results = recorder.results();
        const auto dropped = std::count_if(results.begin(), results.end(), [](const Recorded& r) {
            return !r.ok && r.message.rfind("dropped: more than 256 jobs of rule flappy", 0) == 0;
        });
        CHECK(dropped == 4);
    }
    hung.open();
    runner.waitIdle();
    const auto results = recorder.results();
    const auto ran = std::count_if(results.begin(), results.end(), [](const Recorded& r) { return r.ok; });
    CHECK(ran == 1 + (kMax + 3 - 3) + 1 + (1 - 1) + 1);  // hung, kept notifications, rollback, calm
}

TEST_CASE("HookRunner: a deferred step lets the next steps run, then reports its final result",
          "[hooks][runner][lanes]") {
    for (const bool complete_first : {false, true}) {
        INFO("final result sent before run() returns: " << complete_first);
        std::mutex mutex;
        std::vector<std::string> seen;  // "<hook> <status> <message>" in callback order
        HookRunner runner([&](const std::string& hook, const BreachEvent&, const HookResult& r) {
            std::lock_guard lock(mutex);
            seen.push_back(hook + " " + rollguard::agent::stepStatus(r) + " " + r.message);
        });
        auto deferring = std::make_unique<DeferringHook>("notify", complete_first);
        DeferringHook& notify = *deferring;
        runner.add(std::move(deferring));
        std::vector<rollguard::agent::HookStep> steps_seen;
        class StepsHook final : public Hook {
        public:
            explicit StepsHook(std::vector<rollguard::agent::HookStep>& out) : out_(out) {}
            const std::string& name() const override { return name_; }
            HookType type() const override { return HookType::EnvFile; }
            HookResult run(const BreachEvent& event) override {
                out_ = event.steps;
                HookResult r;
                r.ok = true;
                r.message = "rolled back";
                return r;
            }

        private:
            std::string name_ = "rollback";
            std::vector<rollguard::agent::HookStep>& out_;
        };
        runner.add(std::make_unique<StepsHook>(steps_seen), rollguard::agent::RunIf::PreviousOk);
        runner.enqueue({"notify", "rollback"}, groupEvent("r", "", "critical"));
        if (!complete_first) {
            REQUIRE(eventually(
                [&] {
                    std::lock_guard lock(mutex);
                    return seen.size() == 2;
                },
                60s));
            notify.finish(notify.events().at(0), true);
        }
        runner.waitIdle();  // waits for the final result too
        std::lock_guard lock(mutex);
        REQUIRE(seen.size() == 3);
        CHECK(seen[0] == "notify spooled HTTP 503; retrying in the background");
        // previous_ok: a spooled step has not failed.
        REQUIRE(steps_seen.size() == 1);
        CHECK(steps_seen[0].status == "spooled");
        if (complete_first) {
            CHECK(seen[1] == "notify ok HTTP 200 after 2 attempts");
            CHECK(seen[2] == "rollback ok rolled back");
        } else {
            CHECK(seen[1] == "rollback ok rolled back");
            CHECK(seen[2] == "notify ok HTTP 200 after 2 attempts");
        }
    }
}
