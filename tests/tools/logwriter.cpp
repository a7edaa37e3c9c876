// rollguard-logwriter: the soak and fault scripts' writer (tests/faults/soak.sh,
// tests/faults/kill_ingest.sh). Appends JSON access-log lines to a file at a steady rate,
// in batches every 10 ms (rollguard-loggen sleeps once per line, which cannot hold 50,000
// lines/s on a loaded machine), rotates the file every --rotate-every seconds or
// --rotate-lines lines, and says exactly how many lines it wrote.
//
// Rotation:
//   rename        app.log -> app.log.1 (replacing it; with --numbered app.log.N, N the
//                 first number not taken), then a new app.log, as logrotate's `create`.
//   copytruncate  app.log is copied to app.log.1 (app.log.N), then --gap-lines more lines
//                 are appended to app.log (what an application writes while logrotate is
//                 between its copy and its truncate: they are in no copy), then app.log is
//                 truncated to 0 and writing goes on in it.
//
// Lines: {"ts":"<RFC 3339>","seq":N,"method":..,"route":..,"status":..,"duration_ms":..,
// "bytes":..,"trace_id":".."} of ~170 bytes; every line differs (seq). ~1% are 5xx.
//
// It stops after --seconds (0: no limit) or --lines (0: no limit), whichever comes first,
// or on SIGTERM/SIGINT (after the batch in hand, which it completes). Then it prints one
// line on stdout: "written=N rotations=R gap_lines=G seq_end=S" (N: lines appended, all of
// them complete; G: of those, lines written between a copy and its truncate; S: the next
// seq), and exits 0. Exit 1 on an I/O error (message on stderr), 2 on bad arguments.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "rollguard/agent/json_writer.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;

void onSignal(int) {
    g_stop = 1;
}

/// Writes all of `data` to `fd`; false (errno set) on an error.
bool writeAll(int fd, const char* data, std::size_t size) {
    while (size > 0) {
        const ssize_t n = ::write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

int openLog(const std::string& path) {
    return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/// Copies `from` (its bytes now) to `to`, replacing it; false on an error.
bool copyFile(const std::string& from, const std::string& to) {
    const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return false;
    }
    const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        ::close(in);
        return false;
    }
    char buf[1 << 16];
    bool ok = true;
    for (;;) {
        const ssize_t n = ::read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            ok = n == 0;
            break;
        }
        if (!writeAll(out, buf, static_cast<std::size_t>(n))) {
            ok = false;
            break;
        }
    }
    ::close(in);
    return ::close(out) == 0 && ok;
}

class LineMaker {
public:
    explicit LineMaker(std::uint64_t seed) : rng_(seed) {}

    /// Appends one line (with its '\n') with sequence number `seq` and time `ts`.
    void append(std::string& out, std::uint64_t seq, const std::string& ts) {
        static const char* routes[] = {"/api/orders", "/api/orders/{id}", "/api/users/{id}", "/api/search",
                                       "/healthz"};
        static const char* methods[] = {"GET", "GET", "GET", "POST", "PUT"};
        const std::uint64_t r = rng_();
        const unsigned k = static_cast<unsigned>(r % 5);
        const int status = (r >> 8) % 100 == 0 ? 500 : 200;
        const double ms = 5.0 + static_cast<double>((r >> 16) % 200000) / 1000.0;
        char line[320];
        const int n = std::snprintf(line, sizeof(line),
                                    "{\"ts\":\"%s\",\"seq\":%llu,\"method\":\"%s\",\"route\":\"%s\",\"status\":%d,"
                                    "\"duration_ms\":%.3f,\"bytes\":%u,\"trace_id\":\"%016llx\"}\n",
                                    ts.c_str(), static_cast<unsigned long long>(seq), methods[k], routes[k], status,
                                    ms, static_cast<unsigned>(200 + (r >> 40) % 4000),
                                    static_cast<unsigned long long>(rng_()));
        out.append(line, static_cast<std::size_t>(n));
    }

private:
    std::mt19937_64 rng_;
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Append JSON access-log lines at a steady rate, rotate, and count exactly what was written."};
    std::string out;
    double rate = 50000;
    double seconds = 0;
    std::uint64_t max_lines = 0;
    double rotate_every = 0;
    std::uint64_t rotate_lines = 0;
    std::string rotation = "rename";
    bool numbered = false;
    std::uint64_t gap_lines = 0;
    std::uint64_t seq = 0;
    unsigned seed = 42;
    app.add_option("-o,--out", out, "Log file to append to")->required();
    app.add_option("--rate", rate, "Lines per second")->check(CLI::Range(1.0, 1e7));
    app.add_option("--seconds", seconds, "Stop after this many seconds (0: no limit)")->check(CLI::NonNegativeNumber);
    app.add_option("--lines", max_lines, "Stop after this many lines (0: no limit)");
    app.add_option("--rotate-every", rotate_every, "Rotate every this many seconds (0: never)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--rotate-lines", rotate_lines, "Rotate every this many lines (0: never)");
    app.add_option("--rotation", rotation, "rename or copytruncate")->check(CLI::IsMember({"rename", "copytruncate"}));
    app.add_flag("--numbered", numbered, "Rotate to the first free OUT.N (N = 1, 2, ...) instead of always OUT.1");
    app.add_option("--gap-lines", gap_lines, "copytruncate: lines appended between the copy and the truncate");
    app.add_option("--seq-start", seq, "First sequence number");
    app.add_option("--seed", seed, "Random seed");
    CLI11_PARSE(app, argc, argv);

    std::signal(SIGTERM, onSignal);
    std::signal(SIGINT, onSignal);

    int fd = openLog(out);
    if (fd < 0) {
        std::cerr << "rollguard-logwriter: cannot open " << out << ": " << std::strerror(errno) << "\n";
        return 1;
    }

    LineMaker maker(seed);
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    std::uint64_t written = 0;
    std::uint64_t rotations = 0;
    std::uint64_t gap_written = 0;
    std::uint64_t since_rotation = 0;
    double next_rotation = rotate_every;
    std::string batch;
    const auto fail = [&](const std::string& what) {
        std::cerr << "rollguard-logwriter: " << what << ": " << std::strerror(errno) << "\n";
        return 1;
    };
    const auto rotate = [&]() -> bool {
        std::uint64_t k = 1;
        struct stat st {};
        while (numbered && ::stat((out + "." + std::to_string(k)).c_str(), &st) == 0) {
            ++k;  // the first free number: several runs of the writer may share the directory
        }
        const std::string to = out + "." + std::to_string(k);
        if (rotation == "rename") {
            if (::rename(out.c_str(), to.c_str()) != 0) {
                return false;
            }
            ::close(fd);
            fd = openLog(out);
            if (fd < 0) {
                return false;
            }
        } else {
            if (!copyFile(out, to)) {
                return false;
            }
            if (gap_lines > 0) {
                batch.clear();
                const std::string ts = rollguard::agent::formatRfc3339(std::chrono::system_clock::now());
                for (std::uint64_t i = 0; i < gap_lines; ++i) {
                    maker.append(batch, seq++, ts);
                }
                if (!writeAll(fd, batch.data(), batch.size())) {
                    return false;
                }
                written += gap_lines;
                gap_written += gap_lines;
            }
            if (::ftruncate(fd, 0) != 0) {
                return false;
            }
        }
        ++rotations;
        since_rotation = 0;
        return true;
    };

    for (;;) {
        const double elapsed = std::chrono::duration<double>(clock::now() - start).count();
        const bool time_up = seconds > 0 && elapsed >= seconds;
        const double until = seconds > 0 && elapsed > seconds ? seconds : elapsed;
        std::uint64_t due = static_cast<std::uint64_t>(until * rate);
        if (max_lines > 0 && due > max_lines) {
            due = max_lines;
        }
        if (due > written) {
            std::uint64_t n = due - written;
            if (rotate_lines > 0 && since_rotation + n > rotate_lines) {
                n = rotate_lines - since_rotation;  // rotate exactly at the boundary
            }
            batch.clear();
            const std::string ts = rollguard::agent::formatRfc3339(std::chrono::system_clock::now());
            for (std::uint64_t i = 0; i < n; ++i) {
                maker.append(batch, seq++, ts);
            }
            if (!writeAll(fd, batch.data(), batch.size())) {
                return fail("write " + out);
            }
            written += n;
            since_rotation += n;
        }
        const bool lines_done = max_lines > 0 && written >= max_lines;
        if (time_up || lines_done || g_stop) {
            break;  // every line due up to now (time_up: up to --seconds) is written
        }
        if ((rotate_lines > 0 && since_rotation >= rotate_lines) || (rotate_every > 0 && elapsed >= next_rotation)) {
            if (!rotate()) {
                return fail("rotate " + out);
            }
            while (rotate_every > 0 && next_rotation <= elapsed) {
                next_rotation += rotate_every;
            }
            continue;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::close(fd);
    std::printf("written=%llu rotations=%llu gap_lines=%llu seq_end=%llu\n", static_cast<unsigned long long>(written),
                static_cast<unsigned long long>(rotations), static_cast<unsigned long long>(gap_written),
                static_cast<unsigned long long>(seq));
    return 0;
}
