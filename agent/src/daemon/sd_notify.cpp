#include "rollguard/agent/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

namespace rollguard::agent {

namespace {

/// A strictly decimal, positive integer (no sign, no spaces, no trailing text).
std::optional<unsigned long long> parsePositive(const char* text) {
    if (text == nullptr || *text == '\0') {
        return std::nullopt;
    }
    const char* end = text + std::strlen(text);
    unsigned long long value = 0;
    const auto [ptr, ec] = std::from_chars(text, end, value);
    if (ec != std::errc{} || ptr != end || value == 0) {
        return std::nullopt;
    }
    return value;
}

/// Closes the descriptor on every return path.
struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) {
            ::close(fd);
        }
    }
};

}  // namespace

bool sdNotify(std::string_view state) {
    const char* socket_env = std::getenv("NOTIFY_SOCKET");
    if (socket_env == nullptr || *socket_env == '\0') {
        return false;
    }
    const std::string_view path(socket_env);
    if (path.front() != '/' && path.front() != '@') {
        return false;
    }

    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    // A path socket needs room for its terminating NUL; an abstract one does not.
    const std::size_t room = sizeof(address.sun_path) - (path.front() == '/' ? 1 : 0);
    if (path.size() > room) {
        return false;
    }
    std::memcpy(address.sun_path, path.data(), path.size());
    if (path.front() == '@') {
        address.sun_path[0] = '\0';
    }
    // The address length counts exactly the name: an abstract name's trailing bytes
    // would otherwise be part of it.
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() +
                                               (path.front() == '/' ? 1 : 0));

    Fd sock{::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
    if (sock.fd < 0) {
        return false;
    }
    for (;;) {
        const ssize_t sent = ::sendto(sock.fd, state.data(), state.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                                      reinterpret_cast<const sockaddr*>(&address), length);
        if (sent >= 0) {
            return static_cast<std::size_t>(sent) == state.size();
        }
        if (errno != EINTR) {
            return false;
        }
    }
}

std::optional<std::chrono::microseconds> sdWatchdogInterval() {
    const auto usec = parsePositive(std::getenv("WATCHDOG_USEC"));
    // Beyond ~146000 years the microseconds would not fit std::chrono::microseconds.
    if (!usec || *usec > (1ULL << 62)) {
        return std::nullopt;
    }
    if (const char* pid_text = std::getenv("WATCHDOG_PID"); pid_text != nullptr && *pid_text != '\0') {
        const auto pid = parsePositive(pid_text);
        if (!pid || *pid != static_cast<unsigned long long>(::getpid())) {
            return std::nullopt;
        }
    }
    return std::chrono::microseconds{static_cast<std::chrono::microseconds::rep>(*usec)};
}

}  // namespace rollguard::agent
