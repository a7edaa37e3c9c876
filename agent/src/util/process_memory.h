#pragma once
// Where the agent's memory goes, as the kernel and the allocator see it: what
// /api/v1/status and /metrics break the resident memory down by.

#include <cstdint>

namespace rollguard::agent {

struct ProcessMemory {
    std::uint64_t rss_bytes = 0;   ///< resident (VmRSS)
    std::uint64_t anon_bytes = 0;  ///< resident anonymous memory: heap, stacks (RssAnon)
    std::uint64_t file_bytes = 0;  ///< resident file pages: the binary and its libraries (RssFile)
    /// The allocator's view (glibc mallinfo2): bytes handed out to the program, and bytes
    /// freed but kept by the allocator (resident when they were touched). A large free
    /// part is fragmentation, not data.
    std::uint64_t heap_in_use_bytes = 0;
    std::uint64_t heap_free_bytes = 0;
};

/// The calling process's memory from /proc/self/status and mallinfo2. Fields that cannot
/// be read stay 0. Thread-safe; walks the allocator's arenas (microseconds), so call it
/// at most once a tick.
ProcessMemory readProcessMemory();

/// Hands the allocator's free pages back to the kernel (glibc malloc_trim(0): whole free
/// pages anywhere in the heap, not only at its top). The daemon's heap holds long-lived
/// window slots allocated every tick between short-lived buffers; the buffers' freed
/// space between live slots stays resident otherwise (main() fixes the trim threshold at
/// 8 MB for the scrapers' sake, so glibc trims only the top of the heap, rarely). Walks
/// the free lists: about a millisecond for a heap of a few MB; call it every few seconds
/// at most.
void releaseFreeMemory();

}  // namespace rollguard::agent
