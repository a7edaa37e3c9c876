#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace rollguard::agent {

/// The service manager notification protocol of sd_notify(3), without libsystemd.
///
/// Sends `state` (newline-separated assignments such as "READY=1\nSTATUS=up") as one
/// datagram to the AF_UNIX socket named by $NOTIFY_SOCKET: a filesystem path (starting
/// with '/') or, when it starts with '@', an abstract socket (the '@' becomes the
/// leading NUL byte). Returns true when the datagram was sent; false when NOTIFY_SOCKET
/// is unset or empty (not run by a service manager: a no-op), names an unsupported
/// address (e.g. vsock:, which systemd 252 does not use for services), is too long for
/// sun_path, or the send fails. Never throws, never blocks (MSG_DONTWAIT) and never
/// raises SIGPIPE. The environment is not changed, so children (hook scripts) inherit
/// NOTIFY_SOCKET; with NotifyAccess=main the manager ignores whatever they send.
/// Thread-safe: each call uses its own socket; it only reads the environment, so it is
/// safe as long as nobody calls setenv/unsetenv concurrently.
bool sdNotify(std::string_view state);

/// The watchdog interval the service manager expects WATCHDOG=1 within, from
/// $WATCHDOG_USEC (microseconds, decimal, > 0). Honours $WATCHDOG_PID as
/// sd_watchdog_enabled(3) does: when set, the interval applies only if it names this
/// process. nullopt when the watchdog is off, the values do not parse, or WATCHDOG_PID
/// names another process. Send WATCHDOG=1 at least every half of it.
/// Thread-safe (reads the environment only).
std::optional<std::chrono::microseconds> sdWatchdogInterval();

}  // namespace rollguard::agent
