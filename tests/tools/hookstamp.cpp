// rollguard-hookstamp FILE: appends the wall-clock time at which it started running
// ("SECONDS.MICROSECONDS\n", CLOCK_REALTIME) to FILE (created 0600), then exits 0.
// bench/bench_detection.sh makes it a rule's script hook: its first action is the
// stamp, so the stamp is the hook process's start (plus the dynamic loader's few hundred
// microseconds), with none of a shell's start-up in it.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>

int main(int argc, char** argv) {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    if (argc != 2) {
        std::fputs("usage: rollguard-hookstamp FILE\n", stderr);
        return 2;
    }
    char text[48];
    const int len = std::snprintf(text, sizeof(text), "%lld.%06ld\n", static_cast<long long>(now.tv_sec),
                                  static_cast<long>(now.tv_nsec / 1000));
    const int fd = ::open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || len <= 0) {
        std::perror("rollguard-hookstamp");
        return 1;
    }
    const bool ok = ::write(fd, text, static_cast<std::size_t>(len)) == len;
    ::close(fd);
    return ok ? 0 : 1;
}
