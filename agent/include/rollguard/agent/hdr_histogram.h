#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace rollguard::agent {

namespace detail {

/// A fixed-size array of int64 counts that starts zeroed without writing the zeros: a
/// large one (64 KiB and more: a histogram's ~23,000 counts are 184 KiB) is its own
/// anonymous mapping, whose pages become resident only when written, so the counts a
/// histogram never touches cost no memory (a slot's latencies span a few of its buckets).
/// std::vector's zero fill touched every page: with ~30 dense histograms alive (windows,
/// open slots, the recorder's intervals), some 4 MB of resident zeros. A copy copies only
/// the pages holding a non-zero count. Thread-safety: none.
class ZeroedCounts {
public:
    /// Whether large arrays are mappings. Not under AddressSanitizer, which checks the
    /// bounds of calloc'd blocks but not of mappings.
#if defined(__SANITIZE_ADDRESS__)
    static constexpr bool kMapsLargeArrays = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    static constexpr bool kMapsLargeArrays = false;
#else
    static constexpr bool kMapsLargeArrays = true;
#endif
#else
    static constexpr bool kMapsLargeArrays = true;
#endif

    ZeroedCounts() = default;
    explicit ZeroedCounts(std::size_t n);
    ~ZeroedCounts();
    ZeroedCounts(const ZeroedCounts& other);
    ZeroedCounts& operator=(const ZeroedCounts& other);
    ZeroedCounts(ZeroedCounts&& other) noexcept;
    ZeroedCounts& operator=(ZeroedCounts&& other) noexcept;

    std::int64_t& operator[](std::size_t i) { return data_[i]; }
    const std::int64_t& operator[](std::size_t i) const { return data_[i]; }
    std::size_t size() const { return size_; }
    /// Bytes of the array in memory: a mapped array's resident pages (mincore), else all.
    std::size_t residentBytes() const;
    std::int64_t* begin() { return data_; }
    std::int64_t* end() { return data_ + size_; }
    const std::int64_t* begin() const { return data_; }
    const std::int64_t* end() const { return data_ + size_; }

private:
    void release() noexcept;
    std::int64_t* data_ = nullptr;
    std::size_t size_ = 0;
    bool mapped_ = false;
};

}  // namespace detail

/// A High Dynamic Range histogram with HdrHistogram's layout and query rules, our own
/// implementation. Values are non-negative integers in the caller's unit (rollguard
/// stores latencies in microseconds).
///
/// Layout (as HdrHistogram): sub_bucket_count = 2^ceil(log2(2 * 10^sigfigs)); unit
/// magnitude = floor(log2(lowest)); buckets double until highest is covered. Every value
/// maps to a slot whose equivalent range is at most 10^-sigfigs of the value.
///
/// Queries:
///  - valueAtPercentile(p): the highest equivalent value of the first slot whose
///    cumulative count reaches target = max(1, (int64)(p/100 * total + 0.5)).
///  - min()/max(): lowest/highest equivalent value of the smallest/largest recorded slot.
///  - mean()/stddev(): from each slot's median equivalent value.
///
/// A value above `highest` is clamped into the top slot and counted in overflowCount()
/// (HdrHistogram_c >= 0.11.9 refuses such values instead). Negative values are refused
/// (record returns false) and the caller counts them.
///
/// Thread-safety: none; one writer, or external locking.
class HdrHistogram {
public:
    /// lowest >= 1, highest >= 2 * lowest, 1 <= sigfigs <= 5; throws std::invalid_argument.
    HdrHistogram(std::int64_t lowest, std::int64_t highest, int sigfigs);

    /// Leaves the index of non-zero counts incomplete (see indexNonZero) rather than
    /// maintain it per value: the per-line path pays one flag store, not a bit update.
    bool record(std::int64_t value, std::int64_t count = 1);
    void reset();
    /// Builds the index of non-zero counts after record() calls: one pass over the
    /// recorded span. Everything else keeps the index as it changes counts, so a
    /// histogram filled only by add/addAtIndex (a ring's slot, a window's aggregate) is
    /// always indexed. Without the index the walks below scan the span instead: the same
    /// results, at the old cost.
    void indexNonZero();

    /// Adds / subtracts another histogram of the same configuration exactly;
    /// throws std::invalid_argument on a different configuration. Subtract requires
    /// that `other` is contained in this one.
    void add(const HdrHistogram& other);
    void subtract(const HdrHistogram& other);

    std::int64_t totalCount() const { return total_count_; }
    std::int64_t overflowCount() const { return overflow_count_; }
    std::int64_t valueAtPercentile(double percentile) const;
    std::int64_t min() const;
    std::int64_t max() const;
    double mean() const;
    double stddev() const;

    std::int64_t lowestEquivalentValue(std::int64_t value) const;
    std::int64_t highestEquivalentValue(std::int64_t value) const;
    std::int64_t medianEquivalentValue(std::int64_t value) const;
    std::int64_t sizeOfEquivalentValueRange(std::int64_t value) const;
    bool valuesAreEquivalent(std::int64_t a, std::int64_t b) const;

    std::int32_t countsIndexFor(std::int64_t value) const;
    std::int64_t valueAtIndex(std::int32_t index) const;
    std::int64_t countAtIndex(std::int32_t index) const { return counts_[static_cast<std::size_t>(index)]; }
    std::int32_t countsLength() const { return counts_len_; }
    /// Adds `count` at a counts index directly (used to rebuild from sparse slots).
    void addAtIndex(std::int32_t index, std::int64_t count);
    /// Removes `count` at a counts index (a sparse slot leaving a window aggregate).
    /// Refuses (returns false, changes nothing) when the slot holds less than `count`.
    /// Min/max stay exact: they are tightened when the emptied slot was at either end.
    bool subtractAtIndex(std::int32_t index, std::int64_t count);
    /// Adjusts the overflow counter by `delta` (rebuilding or removing sparse slots);
    /// never below zero.
    void adjustOverflowCount(std::int64_t delta);

    /// Calls fn(index, count) for every non-zero slot, in index order.
    void forEachNonZero(const std::function<void(std::int32_t, std::int64_t)>& fn) const;
    /// The same without the std::function call per slot. Cost when indexed: the non-zero
    /// slots plus one word per 64 counts between the smallest and largest of them, so a
    /// sparse slot is encoded or merged at the cost of what was recorded into it, not of
    /// its range.
    template <typename Fn>
    void visitNonZero(Fn&& fn) const {
        if (max_index_ < min_index_) {
            return;
        }
        if (!indexed_) {
            for (std::int32_t i = min_index_; i <= max_index_; ++i) {
                const std::int64_t c = counts_[static_cast<std::size_t>(i)];
                if (c != 0) {
                    fn(i, c);
                }
            }
            return;
        }
        const auto last = static_cast<std::size_t>(max_index_) >> 6;
        for (auto w = static_cast<std::size_t>(min_index_) >> 6; w <= last; ++w) {
            std::uint64_t bits = nonzero_[w];
            while (bits != 0) {
                const std::size_t i = w * 64 + static_cast<std::size_t>(__builtin_ctzll(bits));
                bits &= bits - 1;
                fn(static_cast<std::int32_t>(i), counts_[i]);
            }
        }
    }

    /// Layout figures, as HdrHistogram names them (for tests and diagnostics).
    std::int32_t subBucketCount() const { return sub_bucket_count_; }
    std::int32_t subBucketHalfCount() const { return sub_bucket_half_count_; }
    std::int32_t unitMagnitude() const { return unit_magnitude_; }
    std::int32_t bucketCount() const { return bucket_count_; }

    std::int64_t lowestTrackableValue() const { return lowest_; }
    std::int64_t highestTrackableValue() const { return highest_; }
    int significantFigures() const { return sigfigs_; }
    bool sameConfiguration(const HdrHistogram& other) const;
    /// Bytes the histogram holds: the object, its counts and its index.
    std::size_t memoryBytes() const;
    /// memoryBytes() as far as it is in memory: the counts only where written (they start
    /// as untouched zero pages, detail::ZeroedCounts).
    std::size_t residentBytes() const;

private:
    std::int64_t lowest_;
    std::int64_t highest_;
    int sigfigs_;
    std::int32_t unit_magnitude_ = 0;
    std::int32_t sub_bucket_half_count_magnitude_ = 0;
    std::int32_t sub_bucket_count_ = 0;
    std::int32_t sub_bucket_half_count_ = 0;
    std::int64_t sub_bucket_mask_ = 0;
    std::int32_t bucket_count_ = 0;
    std::int32_t counts_len_ = 0;
    std::int64_t total_count_ = 0;
    std::int64_t overflow_count_ = 0;
    std::int32_t min_index_;  // smallest non-zero index, or counts_len_ when empty
    std::int32_t max_index_;  // largest non-zero index, or -1 when empty
    detail::ZeroedCounts counts_;
    // Bit i set only when counts_[i] != 0, and for every such i while indexed_. Kept
    // because a second of data touches a few hundred of the ~23,000 counts but spans
    // thousands: walking, merging and clearing by these bits costs what was recorded, not
    // the span. record() leaves it incomplete rather than pay for it per line.
    std::vector<std::uint64_t> nonzero_;
    bool indexed_ = true;

    void markNonZero(std::int32_t index) {
        nonzero_[static_cast<std::size_t>(index) >> 6] |= std::uint64_t{1} << (index & 63);
    }
    void markZero(std::int32_t index) {
        nonzero_[static_cast<std::size_t>(index) >> 6] &= ~(std::uint64_t{1} << (index & 63));
    }
    /// Smallest non-zero index >= from, or -1 when there is none up to max_index_.
    std::int32_t nextNonZero(std::int32_t from) const;
    /// Largest non-zero index <= from, or -1 when there is none down to min_index_.
    std::int32_t previousNonZero(std::int32_t from) const;
};

}  // namespace rollguard::agent
