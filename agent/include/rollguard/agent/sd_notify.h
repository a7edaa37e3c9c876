#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace rollguard::agent {

/// The service manager notification protocol of sd_notify(3), through libsystemd.
///
/// Sends `state` (newline-separated assignments such as "READY=1\nSTATUS=up") as one
/// datagram to the socket named by $NOTIFY_SOCKET (a filesystem path starting with '/',
/// or an abstract socket starting with '@'), with libsystemd's sd_notify(0, state).
/// Returns true when the datagram was sent; false when NOTIFY_SOCKET is unset or empty
/// (not run by a service manager: a no-op), names an address libsystemd does not
/// support, or the send fails. Never throws and never raises SIGPIPE (MSG_NOSIGNAL). The
/// environment is not changed, so children (hook scripts) inherit NOTIFY_SOCKET; with
/// NotifyAccess=main the manager ignores whatever they send. Thread-safe: each call uses
/// its own socket; it only reads the environment, so it is safe as long as nobody calls
/// setenv/unsetenv concurrently. `state` must not contain a NUL byte (it is cut there).
bool sdNotify(std::string_view state);

/// The watchdog interval the service manager expects WATCHDOG=1 within:
/// sd_watchdog_enabled(3) on $WATCHDOG_USEC (microseconds, > 0) and $WATCHDOG_PID
/// (when set, the interval applies only if it names this process). nullopt when the
/// watchdog is off, the values do not parse (libsystemd's parser), the interval does not
/// fit std::chrono::microseconds, or WATCHDOG_PID names another process. Send WATCHDOG=1
/// at least every half of it. Thread-safe (reads the environment only).
std::optional<std::chrono::microseconds> sdWatchdogInterval();

}  // namespace rollguard::agent
