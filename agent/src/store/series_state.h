#pragma once
// A series' saved state outside a Series: what Series::serialize writes and
// Series::serializeChanges describes, decoded, so that a checkpoint journal can be replayed
// onto its base without building the windows (agent/src/daemon/checkpoint.cpp).

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rollguard/agent/sliding_window.h"

namespace rollguard::agent::detail {

/// One sealed slot of a ring (or a ring's open slot, saved the same way). `saved` is
/// false from the moment the slot is sealed or re-encoded until a checkpoint holds it
/// (Series::markSaved); only the live Series uses it.
struct SealedSlot {
    std::int64_t index = 0;
    std::int64_t events = 0;
    std::int64_t errors = 0;
    double value_sum = 0.0;
    std::int64_t value_count = 0;
    std::int64_t overflow = 0;
    SparseCounts counts;
    bool saved = false;
};

struct SavedRing {
    std::int64_t width = 0;
    std::optional<SealedSlot> open;
    std::deque<SealedSlot> sealed;  // ascending index
};

/// Decoded Series::serialize bytes.
struct SavedSeries {
    HistogramSettings settings;
    std::optional<rules::TimePoint> first_seen;
    std::optional<rules::TimePoint> newest;
    std::vector<SavedRing> rings;
    std::deque<ValuePoint> points;  // ascending ns, distinct
};

/// Decoded Series::serializeChanges bytes: the whole header, each ring's open slot, the
/// slots sealed or re-encoded since the last save, and the points changed since then.
struct SeriesChanges {
    struct Ring {
        std::int64_t width = 0;
        std::optional<SealedSlot> open;
        /// Sealed slots with an index <= this are gone (they left every window).
        std::optional<std::int64_t> dropped_up_to;
        std::vector<SealedSlot> slots;  // ascending index: new, or replacing the same index
    };
    HistogramSettings settings;
    std::optional<rules::TimePoint> first_seen;
    std::optional<rules::TimePoint> newest;
    std::vector<Ring> rings;
    /// Points before this are gone; nullopt: the series holds no point.
    std::optional<std::int64_t> points_kept_from;
    /// Every point at or after this time is replaced by `points`; nullopt: none changed.
    std::optional<std::int64_t> points_from;
    std::vector<ValuePoint> points;  // ascending, all >= *points_from
};

/// nullopt when the bytes are corrupt (histogram settings are taken from the bytes).
std::optional<SavedSeries> parseSeries(std::string_view bytes);
/// The same bytes Series::serialize writes for that state.
std::string encodeSeries(const SavedSeries& series);
/// nullopt when the bytes are corrupt.
std::optional<SeriesChanges> parseSeriesChanges(std::string_view bytes);
bool sameSettings(const HistogramSettings& a, const HistogramSettings& b);
/// Applies changes whose settings are those of `series` (check with sameSettings first:
/// applying cannot fail, so a journal record is applied whole or not at all).
void applyChanges(SavedSeries& series, SeriesChanges&& changes);

}  // namespace rollguard::agent::detail
