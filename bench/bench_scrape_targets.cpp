// CPU cost of scraping 100 targets every second (cores used), issue #7's second figure.
//
//   build/bench/bench_scrape_targets [SECONDS=20] [TARGETS=100]
//
// 100 loopback HTTP/1.1 servers (keep-alive, Content-Length) serve a real node exporter
// 1.5 /metrics (bench/data/node_exporter_1.5.prom, ~57 KB, uncompressed) from a forked
// CHILD process, so getrusage(RUSAGE_SELF) counts only the scraping side. Every second
// the parent runs the daemon's own scrape runtime: 100 prometheus sources (interval 1s,
// jittered offsets, a counter and a gauge series each) on one ScrapeLoop thread, with
// the main thread taking the harvest into the judge's windows every second, as the
// daemon's tick does.
// After SECONDS ticks it prints the CPU used (user/sys), cores used (CPU / wall) and
// CPU µs per target scrape, next to two baselines measured in the same run over the
// same bytes: copying them with memcpy + CRC-32, and parsing them only (no transport).
// Minor page faults are printed too: with glibc's default malloc settings each parse's
// allocations are returned to the kernel (heap trim / mmap threshold) and faulted back
// in by the next one, which shows up as system time; the benchmark uses the fixed
// thresholds the rollguard binary sets (agent/main.cpp).
// Figures, never a pass/fail.

#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "rollguard/agent/exposition.h"
#include "rollguard/agent/judge.h"
#include "rollguard/agent/scrape_loop.h"
#include "rollguard/agent/scraper.h"

namespace {

using namespace rollguard::agent;
using Clock = std::chrono::steady_clock;

// ---- the target servers (child process) ------------------------------------------

struct Connection {
    int fd = -1;
    std::string in;
    std::string out;
    std::size_t sent = 0;
};

/// A listening socket on 127.0.0.1 with a kernel-chosen port; -1 on failure.
int listenLoopback(std::uint16_t& port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -1;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        ::close(fd);
        return -1;
    }
    port = ntohs(addr.sin_port);
    return fd;
}

/// Serves `response` for every request on every listener, forever, on one thread with
/// poll(). Requests are GETs without bodies: each "\r\n\r\n" is one request.
[[noreturn]] void serveForever(const std::vector<int>& listeners, const std::string& response) {
    std::vector<Connection> conns;
    std::vector<pollfd> fds;
    for (;;) {
        fds.clear();
        for (const int l : listeners) {
            fds.push_back({l, POLLIN, 0});
        }
        for (const Connection& c : conns) {
            const bool pending = c.sent < c.out.size();
            fds.push_back({c.fd, static_cast<short>(pending ? (POLLIN | POLLOUT) : POLLIN), 0});
        }
        if (::poll(fds.data(), fds.size(), -1) < 0) {
            continue;
        }
        for (std::size_t i = 0; i < listeners.size(); ++i) {
            if ((fds[i].revents & POLLIN) != 0) {
                for (;;) {
                    const int fd = ::accept4(listeners[i], nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) {
                        break;
                    }
                    conns.push_back({fd, {}, {}, 0});
                }
            }
        }
        // fds past the listeners map to conns as they were before this round's accepts.
        const std::size_t polled = fds.size() - listeners.size();
        std::vector<bool> dead(conns.size(), false);
        for (std::size_t k = 0; k < polled; ++k) {
            Connection& c = conns[k];
            const short ev = fds[listeners.size() + k].revents;
            if ((ev & (POLLIN | POLLHUP | POLLERR)) != 0) {
                char buf[16384];
                const ssize_t n = ::read(c.fd, buf, sizeof buf);
                if (n <= 0) {
                    dead[k] = true;
                    continue;
                }
                c.in.append(buf, static_cast<std::size_t>(n));
                std::size_t end;
                while ((end = c.in.find("\r\n\r\n")) != std::string::npos) {
                    c.in.erase(0, end + 4);
                    c.out += response;
                }
            }
            if (c.sent < c.out.size()) {
                const ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
                if (n > 0) {
                    c.sent += static_cast<std::size_t>(n);
                    if (c.sent == c.out.size()) {
                        c.out.clear();
                        c.sent = 0;
                    }
                } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                    dead[k] = true;
                }
            }
        }
        std::vector<Connection> alive;
        for (std::size_t k = 0; k < conns.size(); ++k) {
            if (k < dead.size() && dead[k]) {
                ::close(conns[k].fd);
            } else {
                alive.push_back(std::move(conns[k]));
            }
        }
        conns.swap(alive);
    }
}

// ---- the measured work (parent process) -------------------------------------------

/// What one tick saw.
struct TickResult {
    std::size_t ok = 0;
    std::size_t failed = 0;
    std::size_t bytes = 0;       ///< decoded body bytes of all targets
    std::size_t samples = 0;     ///< parsed samples of all targets
    double selected_sum = 0;     ///< keeps the selections observable
};

/// The parse-and-select half of a scrape: what a prometheus source does with one body.
void parseAndSelect(const std::string& body, ExpositionFormat format, TickResult& out) {
    const ParseResult parsed = parseExposition(body, format);
    out.samples += parsed.samples.size();
    for (const Sample* s : parsed.select("node_cpu_seconds_total", {{"mode", LabelMatcher::Op::Equal, "idle"}})) {
        out.selected_sum += s->value;
    }
    for (const Sample* s : parsed.select("node_load1")) {
        out.selected_sum += s->value;
    }
}

/// One scrape round of every target: a single fetchAll, then each body parsed and two
/// series selected. This is the per-second work the benchmark measures; the daemon's
/// scrape runtime can replace it wholesale. `last_bodies` receives the bodies (for the
/// baselines).
TickResult scrapeOnce(Scraper& scraper, const std::vector<ScrapeRequest>& requests,
                      std::vector<std::string>* last_bodies = nullptr) {
    TickResult result;
    std::vector<ScrapeResponse> responses = scraper.fetchAll(requests);
    for (ScrapeResponse& r : responses) {
        if (!r.ok()) {
            ++result.failed;
            continue;
        }
        ++result.ok;
        result.bytes += r.body.size();
        parseAndSelect(r.body, formatFromContentType(r.content_type), result);
    }
    if (last_bodies != nullptr) {
        last_bodies->clear();
        for (ScrapeResponse& r : responses) {
            last_bodies->push_back(std::move(r.body));
        }
    }
    return result;
}

// ---- measuring --------------------------------------------------------------------

struct Cpu {
    double user = 0;
    double sys = 0;
    long minor_faults = 0;
    double total() const { return user + sys; }
};

Cpu cpuNow() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    const auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
    return {secs(ru.ru_utime), secs(ru.ru_stime), ru.ru_minflt};
}

Cpu operator-(const Cpu& a, const Cpu& b) { return {a.user - b.user, a.sys - b.sys, a.minor_faults - b.minor_faults}; }

std::array<std::uint32_t, 256> crcTable() {
    std::array<std::uint32_t, 256> table{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) {
            c = (c & 1U) != 0 ? 0xEDB88320U ^ (c >> 1) : c >> 1;
        }
        table[i] = c;
    }
    return table;
}

std::uint32_t crc32(const std::array<std::uint32_t, 256>& table, const char* data, std::size_t n) {
    std::uint32_t c = 0xFFFFFFFFU;
    for (std::size_t i = 0; i < n; ++i) {
        c = table[(c ^ static_cast<unsigned char>(data[i])) & 0xFFU] ^ (c >> 8);
    }
    return c ^ 0xFFFFFFFFU;
}

}  // namespace

int main(int argc, char** argv) {
    // The allocator settings the rollguard binary uses (agent/main.cpp); comment these
    // out to see glibc's defaults (more system time in page faults).
    ::mallopt(M_MMAP_THRESHOLD, 4 << 20);
    ::mallopt(M_TRIM_THRESHOLD, 8 << 20);
    const int seconds = argc > 1 ? std::atoi(argv[1]) : 20;
    const int targets = argc > 2 ? std::atoi(argv[2]) : 100;
    if (seconds <= 0 || targets <= 0) {
        std::fprintf(stderr, "usage: %s [SECONDS=20] [TARGETS=100]\n", argv[0]);
        return 2;
    }

    std::ifstream in(ROLLGUARD_SOURCE_DIR "/bench/data/node_exporter_1.5.prom", std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string body = ss.str();
    if (body.empty()) {
        std::fprintf(stderr, "cannot read bench/data/node_exporter_1.5.prom\n");
        return 1;
    }
    const std::string response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                                 "Content-Length: " +
                                 std::to_string(body.size()) + "\r\n\r\n" + body;

    // Ports are chosen (bound and listening) before the fork: no race, no readiness wait.
    std::vector<int> listeners;
    std::vector<std::uint16_t> ports;
    for (int i = 0; i < targets; ++i) {
        std::uint16_t port = 0;
        const int fd = listenLoopback(port);
        if (fd < 0) {
            std::perror("listen");
            return 1;
        }
        listeners.push_back(fd);
        ports.push_back(port);
    }
    const pid_t parent = ::getpid();
    const pid_t child = ::fork();
    if (child < 0) {
        std::perror("fork");
        return 1;
    }
    if (child == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) {
            ::_exit(0);
        }
        serveForever(listeners, response);
    }
    for (const int fd : listeners) {
        ::close(fd);
    }

    std::vector<ScrapeRequest> requests;
    for (const std::uint16_t port : ports) {
        ScrapeRequest r;
        r.url = "http://127.0.0.1:" + std::to_string(port) + "/metrics";
        r.headers = {std::string("Accept: ") + kScrapeAcceptHeader};
        r.timeout = std::chrono::seconds{5};
        r.max_bytes = 16 << 20;
        requests.push_back(std::move(r));
    }

    Scraper scraper;
    // Warm-up: the bodies for the baselines, fetched once.
    std::vector<std::string> bodies;
    const TickResult warm = scrapeOnce(scraper, requests, &bodies);
    if (warm.ok != requests.size()) {
        std::fprintf(stderr, "warm-up: %zu of %zu targets failed\n", warm.failed, requests.size());
    }

    // The daemon's scrape runtime: one prometheus source per target.
    Config config;
    for (std::size_t i = 0; i < ports.size(); ++i) {
        ScrapeSourceConfig src;
        src.name = "t" + std::to_string(i);
        src.type = ScrapeType::Prometheus;
        src.url = requests[i].url;
        src.interval = std::chrono::seconds{1};
        src.timeout = std::chrono::seconds{1};
        src.max_bytes = 16 << 20;
        ScrapeSeriesConfig idle;
        idle.name = "idle";
        idle.kind = ScrapeSeriesConfig::Kind::Counter;
        idle.selector.metric = "node_cpu_seconds_total";
        std::string error;
        idle.selector.matchers.push_back(
            *rollguard::rules::LabelMatcher::make("mode", rollguard::rules::LabelMatcher::Op::Equal, "idle", error));
        src.series.push_back(idle);
        ScrapeSeriesConfig load;
        load.name = "load";
        load.kind = ScrapeSeriesConfig::Kind::Gauge;
        load.selector.metric = "node_load1";
        src.series.push_back(load);
        config.scrapes.push_back(std::move(src));
    }
    Judge judge(config);
    ScrapeLoop loop(config, judge, "bench-host");

    TickResult total;
    std::size_t parts = 0;
    const Cpu cpu0 = cpuNow();
    const auto start = Clock::now();
    loop.start();
    for (int tick = 1; tick <= seconds; ++tick) {
        std::this_thread::sleep_until(start + std::chrono::seconds{tick});
        const auto now = std::chrono::time_point_cast<rollguard::rules::TimePoint::duration>(
            std::chrono::system_clock::now());
        ScrapeHarvest harvest = loop.take();
        parts += harvest.parts.size();
        for (const auto& p : harvest.parts) {
            judge.addPart(p.source, p.part, now, std::chrono::seconds{1});
        }
        judge.evaluate(now);
    }
    loop.stop();
    const double wall = std::chrono::duration<double>(Clock::now() - start).count();
    const Cpu cpu = cpuNow() - cpu0;
    for (const auto& t : loop.status()) {
        std::uint64_t failed = 0;
        for (const auto& [kind, count] : t.errors) {
            failed += count;
        }
        total.failed += failed;
        total.ok += t.scrapes - failed;
        total.samples += t.samples * (t.scrapes - failed);
    }
    total.bytes = bodies.empty() ? 0 : bodies.front().size() * total.ok;

    ::kill(child, SIGTERM);
    ::waitpid(child, nullptr, 0);

    // Baselines over the same bytes, as many rounds as ticks, back to back (pure CPU).
    const auto table = crcTable();
    std::string copy(body.size(), '\0');
    std::uint32_t crc_acc = 0;
    const Cpu copy0 = cpuNow();
    for (int tick = 0; tick < seconds; ++tick) {
        for (const std::string& b : bodies) {
            copy.resize(b.size());
            std::memcpy(copy.data(), b.data(), b.size());
            crc_acc += crc32(table, copy.data(), copy.size());
        }
    }
    const Cpu copy_cpu = cpuNow() - copy0;

    TickResult parse_only;
    const ExpositionFormat format = formatFromContentType("text/plain; version=0.0.4; charset=utf-8");
    const Cpu parse0 = cpuNow();
    for (int tick = 0; tick < seconds; ++tick) {
        for (const std::string& b : bodies) {
            parseAndSelect(b, format, parse_only);
        }
    }
    const Cpu parse_cpu = cpuNow() - parse0;

    const double scrapes = static_cast<double>(total.ok + total.failed);
    const double baseline_bodies = static_cast<double>(seconds) * static_cast<double>(bodies.size());
    const double bytes_per_scrape = total.ok > 0 ? static_cast<double>(total.bytes) / total.ok : 0;
    std::printf("bench_scrape_targets: %d prometheus sources every 1 s for %d s (wall %.2f s) on the daemon's "
                "ScrapeLoop, %zu store parts taken into the judge\n",
                targets, seconds, wall, parts);
    std::printf("  scrapes ok/failed          %zu / %zu\n", total.ok, total.failed);
    std::printf("  bytes per scrape           %.0f (uncompressed, keep-alive)\n", bytes_per_scrape);
    std::printf("  samples per scrape         %.0f\n", total.ok > 0 ? static_cast<double>(total.samples) / total.ok : 0);
    std::printf("  CPU user / sys             %.3f s / %.3f s  (%ld minor page faults)\n", cpu.user, cpu.sys,
                cpu.minor_faults);
    std::printf("  cores used (CPU / wall)    %.4f\n", cpu.total() / wall);
    std::printf("  CPU per target scrape      %.1f us (fetch + parse + extract + store)\n", cpu.total() / scrapes * 1e6);
    std::printf("  baseline memcpy+crc32      %.1f us per body  (%.4f cores at 1 tick/s; user %.3f s sys %.3f s)\n",
                copy_cpu.total() / baseline_bodies * 1e6, copy_cpu.total() / seconds, copy_cpu.user, copy_cpu.sys);
    std::printf("  baseline parse+select only %.1f us per body  (%.4f cores at 1 tick/s; user %.3f s sys %.3f s; %ld minor "
                "page faults)\n",
                parse_cpu.total() / baseline_bodies * 1e6, parse_cpu.total() / seconds, parse_cpu.user, parse_cpu.sys,
                parse_cpu.minor_faults);
    std::printf("  transport share            %.1f us per target scrape (total minus parse-only)\n",
                (cpu.total() - parse_cpu.total()) / scrapes * 1e6);
    std::printf("  (checksums: %.1f %.1f %08x)\n", total.selected_sum, parse_only.selected_sum, crc_acc);
    return total.failed == 0 ? 0 : 1;
}
