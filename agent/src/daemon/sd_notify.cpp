// The service manager notification protocol through libsystemd: sd_notify(3) and
// sd_watchdog_enabled(3) are systemd's own, maintained implementation of the protocol
// (path, abstract and, in later versions, vsock sockets), so we keep no copy of it.
#include "rollguard/agent/sd_notify.h"

#include <cstdint>
#include <string>

#include <systemd/sd-daemon.h>

namespace rollguard::agent {

bool sdNotify(std::string_view state) {
    // sd_notify() takes a C string; unset_environment = 0 keeps NOTIFY_SOCKET for the
    // reload path and for hook scripts (see the header).
    const std::string text(state);
    return ::sd_notify(0, text.c_str()) > 0;
}

std::optional<std::chrono::microseconds> sdWatchdogInterval() {
    std::uint64_t usec = 0;
    if (::sd_watchdog_enabled(0, &usec) <= 0) {
        return std::nullopt;
    }
    // Beyond ~146000 years the microseconds would not fit std::chrono::microseconds.
    if (usec == 0 || usec > (std::uint64_t{1} << 62)) {
        return std::nullopt;
    }
    return std::chrono::microseconds{static_cast<std::chrono::microseconds::rep>(usec)};
}

}  // namespace rollguard::agent
