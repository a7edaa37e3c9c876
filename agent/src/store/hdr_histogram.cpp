#include "rollguard/agent/hdr_histogram.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace rollguard::agent {

namespace {

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

std::int32_t floorLog2(std::uint64_t v) {
    return 63 - __builtin_clzll(v);
}

// HdrHistogram's bucket count: the first bucket covers sub_bucket_count units, each
// further bucket doubles the range, until `highest` is inside.
std::int32_t bucketsNeeded(std::int64_t highest, std::int64_t sub_bucket_count, std::int32_t unit_magnitude) {
    std::int64_t smallest_untrackable = sub_bucket_count << unit_magnitude;
    std::int32_t buckets = 1;
    while (smallest_untrackable <= highest) {
        if (smallest_untrackable > kInt64Max / 2) {
            return buckets + 1;
        }
        smallest_untrackable <<= 1;
        ++buckets;
    }
    return buckets;
}

}  // namespace

namespace detail {

namespace {

constexpr std::size_t kMapAt = 64 * 1024;  // bytes: from here on, an anonymous mapping
constexpr std::size_t kPage = 4096;

}  // namespace

ZeroedCounts::ZeroedCounts(std::size_t n) : size_(n) {
    const std::size_t bytes = n * sizeof(std::int64_t);
    if (kMapsLargeArrays && bytes >= kMapAt) {
        void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            throw std::bad_alloc();
        }
        data_ = static_cast<std::int64_t*>(p);
        mapped_ = true;
    } else if (n > 0) {
        data_ = static_cast<std::int64_t*>(std::calloc(n, sizeof(std::int64_t)));
        if (data_ == nullptr) {
            throw std::bad_alloc();
        }
    }
}

std::size_t ZeroedCounts::residentBytes() const {
    const std::size_t bytes = size_ * sizeof(std::int64_t);
    if (!mapped_) {
        return bytes;
    }
    const std::size_t pages = (bytes + kPage - 1) / kPage;
    unsigned char vec[128];  // 512 KiB of counts per call
    std::size_t resident = 0;
    for (std::size_t first = 0; first < pages; first += sizeof vec) {
        const std::size_t n = std::min(sizeof vec, pages - first);
        if (::mincore(reinterpret_cast<unsigned char*>(data_) + first * kPage, n * kPage, vec) != 0) {
            return bytes;  // cannot tell: count it all
        }
        for (std::size_t i = 0; i < n; ++i) {
            resident += (vec[i] & 1U) != 0 ? kPage : 0;
        }
    }
    return std::min(resident, bytes);
}

ZeroedCounts::~ZeroedCounts() {
    release();
}

void ZeroedCounts::release() noexcept {
    if (data_ != nullptr) {
        if (mapped_) {
            ::munmap(data_, size_ * sizeof(std::int64_t));
        } else {
            std::free(data_);
        }
    }
    data_ = nullptr;
    size_ = 0;
    mapped_ = false;
}

ZeroedCounts::ZeroedCounts(const ZeroedCounts& other) : ZeroedCounts(other.size_) {
    // Page by page, only where the source holds a non-zero count: reading a page never
    // written maps the shared zero page, so neither copy grows for the zeros.
    const auto* from = reinterpret_cast<const unsigned char*>(other.data_);
    auto* to = reinterpret_cast<unsigned char*>(data_);
    const std::size_t bytes = size_ * sizeof(std::int64_t);
    for (std::size_t at = 0; at < bytes; at += kPage) {
        const std::size_t len = std::min(kPage, bytes - at);
        const auto* words = reinterpret_cast<const std::int64_t*>(from + at);
        const bool any = std::any_of(words, words + len / sizeof(std::int64_t), [](std::int64_t c) { return c != 0; });
        if (any) {
            std::memcpy(to + at, from + at, len);
        }
    }
}

ZeroedCounts& ZeroedCounts::operator=(const ZeroedCounts& other) {
    if (this != &other) {
        ZeroedCounts copy(other);
        *this = std::move(copy);
    }
    return *this;
}

ZeroedCounts::ZeroedCounts(ZeroedCounts&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, false)) {}

ZeroedCounts& ZeroedCounts::operator=(ZeroedCounts&& other) noexcept {
    if (this != &other) {
        release();
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
        mapped_ = std::exchange(other.mapped_, false);
    }
    return *this;
}

}  // namespace detail

HdrHistogram::HdrHistogram(std::int64_t lowest, std::int64_t highest, int sigfigs)
    : lowest_(lowest), highest_(highest), sigfigs_(sigfigs) {
    if (lowest < 1) {
        throw std::invalid_argument("HdrHistogram: lowest must be >= 1, got " + std::to_string(lowest));
    }
    if (highest / 2 < lowest) {
        throw std::invalid_argument("HdrHistogram: highest must be >= 2 * lowest");
    }
    if (sigfigs < 1 || sigfigs > 5) {
        throw std::invalid_argument("HdrHistogram: significant figures must be in 1..5, got " +
                                    std::to_string(sigfigs));
    }
    std::int64_t largest_single_unit = 2;
    for (int i = 0; i < sigfigs; ++i) {
        largest_single_unit *= 10;
    }
    // ceil(log2(x)) for x >= 2 is floor(log2(x - 1)) + 1.
    const std::int32_t sub_bucket_count_magnitude =
        floorLog2(static_cast<std::uint64_t>(largest_single_unit - 1)) + 1;
    sub_bucket_half_count_magnitude_ = std::max(sub_bucket_count_magnitude, 1) - 1;
    unit_magnitude_ = floorLog2(static_cast<std::uint64_t>(lowest));
    if (unit_magnitude_ + sub_bucket_half_count_magnitude_ > 61) {
        // The top sub-bucket of the first bucket would not fit in 63 bits.
        throw std::invalid_argument("HdrHistogram: lowest is too large for the requested precision");
    }
    sub_bucket_count_ = std::int32_t{1} << (sub_bucket_half_count_magnitude_ + 1);
    sub_bucket_half_count_ = sub_bucket_count_ / 2;
    sub_bucket_mask_ = (std::int64_t{sub_bucket_count_} - 1) << unit_magnitude_;
    bucket_count_ = bucketsNeeded(highest, sub_bucket_count_, unit_magnitude_);
    counts_len_ = (bucket_count_ + 1) * sub_bucket_half_count_;
    min_index_ = counts_len_;
    max_index_ = -1;
    counts_ = detail::ZeroedCounts(static_cast<std::size_t>(counts_len_));
    nonzero_.assign((static_cast<std::size_t>(counts_len_) + 63) / 64, 0);
}

std::int32_t HdrHistogram::countsIndexFor(std::int64_t value) const {
    const auto v = static_cast<std::uint64_t>(std::max<std::int64_t>(value, 0));
    // The mask keeps small values in bucket 0 without a branch.
    const std::int32_t pow2_ceiling = 64 - __builtin_clzll(v | static_cast<std::uint64_t>(sub_bucket_mask_));
    const std::int32_t bucket_index = pow2_ceiling - unit_magnitude_ - (sub_bucket_half_count_magnitude_ + 1);
    const auto sub_bucket_index = static_cast<std::int32_t>(v >> (bucket_index + unit_magnitude_));
    return ((bucket_index + 1) << sub_bucket_half_count_magnitude_) + (sub_bucket_index - sub_bucket_half_count_);
}

std::int64_t HdrHistogram::valueAtIndex(std::int32_t index) const {
    index = std::clamp(index, 0, counts_len_ - 1);
    std::int32_t bucket_index = (index >> sub_bucket_half_count_magnitude_) - 1;
    std::int32_t sub_bucket_index = (index & (sub_bucket_half_count_ - 1)) + sub_bucket_half_count_;
    if (bucket_index < 0) {
        sub_bucket_index -= sub_bucket_half_count_;
        bucket_index = 0;
    }
    return std::int64_t{sub_bucket_index} << (bucket_index + unit_magnitude_);
}

bool HdrHistogram::record(std::int64_t value, std::int64_t count) {
    if (value < 0 || count <= 0) [[unlikely]] {
        return false;
    }
    if (value > highest_) [[unlikely]] {
        value = highest_;
        overflow_count_ += count;
    }
    const std::int32_t index = countsIndexFor(value);
    counts_[static_cast<std::size_t>(index)] += count;
    indexed_ = false;
    total_count_ += count;
    min_index_ = std::min(min_index_, index);
    max_index_ = std::max(max_index_, index);
    return true;
}

void HdrHistogram::addAtIndex(std::int32_t index, std::int64_t count) {
    if (index < 0 || index >= counts_len_ || count <= 0) {
        return;
    }
    counts_[static_cast<std::size_t>(index)] += count;
    markNonZero(index);
    total_count_ += count;
    min_index_ = std::min(min_index_, index);
    max_index_ = std::max(max_index_, index);
}

bool HdrHistogram::subtractAtIndex(std::int32_t index, std::int64_t count) {
    if (index < 0 || index >= counts_len_ || count <= 0) {
        return false;
    }
    auto& slot = counts_[static_cast<std::size_t>(index)];
    if (slot < count) {
        return false;
    }
    slot -= count;
    total_count_ -= count;
    if (slot == 0) {
        markZero(index);
        if (index == min_index_) {
            min_index_ = nextNonZero(index);
            if (min_index_ < 0) {
                min_index_ = counts_len_;
                max_index_ = -1;
                return true;
            }
        }
        if (index == max_index_) {
            max_index_ = previousNonZero(index);
        }
    }
    return true;
}

void HdrHistogram::indexNonZero() {
    if (indexed_) {
        return;
    }
    if (max_index_ >= min_index_) {
        const auto last = static_cast<std::size_t>(max_index_) >> 6;
        for (auto w = static_cast<std::size_t>(min_index_) >> 6; w <= last; ++w) {
            const std::size_t end = std::min<std::size_t>(w * 64 + 64, counts_.size());
            std::uint64_t bits = 0;
            for (std::size_t i = w * 64; i < end; ++i) {
                bits |= static_cast<std::uint64_t>(counts_[i] != 0) << (i & 63);
            }
            nonzero_[w] = bits;
        }
    }
    indexed_ = true;
}

std::int32_t HdrHistogram::nextNonZero(std::int32_t from) const {
    if (from < 0 || from > max_index_) {
        return -1;
    }
    if (!indexed_) {
        while (from <= max_index_ && counts_[static_cast<std::size_t>(from)] == 0) {
            ++from;
        }
        return from <= max_index_ ? from : -1;
    }
    auto w = static_cast<std::size_t>(from) >> 6;
    const auto last = static_cast<std::size_t>(max_index_) >> 6;
    std::uint64_t bits = nonzero_[w] & (~std::uint64_t{0} << (from & 63));
    while (bits == 0) {
        if (++w > last) {
            return -1;
        }
        bits = nonzero_[w];
    }
    return static_cast<std::int32_t>(w * 64 + static_cast<std::size_t>(__builtin_ctzll(bits)));
}

std::int32_t HdrHistogram::previousNonZero(std::int32_t from) const {
    if (from >= counts_len_ || from < min_index_) {
        return -1;
    }
    if (!indexed_) {
        while (from >= min_index_ && counts_[static_cast<std::size_t>(from)] == 0) {
            --from;
        }
        return from >= min_index_ ? from : -1;
    }
    auto w = static_cast<std::size_t>(from) >> 6;
    const auto first = static_cast<std::size_t>(min_index_) >> 6;
    std::uint64_t bits = nonzero_[w] & (~std::uint64_t{0} >> (63 - (from & 63)));
    while (bits == 0) {
        if (w == first) {
            return -1;
        }
        bits = nonzero_[--w];
    }
    return static_cast<std::int32_t>(w * 64 + 63 - static_cast<std::size_t>(__builtin_clzll(bits)));
}

void HdrHistogram::adjustOverflowCount(std::int64_t delta) {
    overflow_count_ = std::max<std::int64_t>(0, overflow_count_ + delta);
}

void HdrHistogram::reset() {
    // Only the marked counts can be non-zero, so a slot resets at the cost of what was
    // recorded into it, not of the whole array (nor of its span).
    if (max_index_ >= min_index_) {
        const auto last = static_cast<std::size_t>(max_index_) >> 6;
        if (!indexed_) {
            std::fill(counts_.begin() + min_index_, counts_.begin() + max_index_ + 1, 0);
        }
        for (auto w = static_cast<std::size_t>(min_index_) >> 6; w <= last; ++w) {
            for (std::uint64_t bits = indexed_ ? nonzero_[w] : 0; bits != 0; bits &= bits - 1) {
                counts_[w * 64 + static_cast<std::size_t>(__builtin_ctzll(bits))] = 0;
            }
            nonzero_[w] = 0;
        }
    }
    indexed_ = true;
    total_count_ = 0;
    overflow_count_ = 0;
    min_index_ = counts_len_;
    max_index_ = -1;
}

bool HdrHistogram::sameConfiguration(const HdrHistogram& other) const {
    return lowest_ == other.lowest_ && highest_ == other.highest_ && sigfigs_ == other.sigfigs_;
}

void HdrHistogram::add(const HdrHistogram& other) {
    if (!sameConfiguration(other)) {
        throw std::invalid_argument("HdrHistogram::add: histograms have different configurations");
    }
    if (!other.indexed_) {
        // Whole words of the span, without a branch per count: as cheap as the plain
        // sum over the span it replaces, and it leaves our index complete. The counts
        // outside other's span are zero, so summing whole words adds nothing there.
        if (other.max_index_ >= other.min_index_) {
            const auto last = static_cast<std::size_t>(other.max_index_) >> 6;
            for (auto w = static_cast<std::size_t>(other.min_index_) >> 6; w <= last; ++w) {
                const std::size_t end = std::min<std::size_t>(w * 64 + 64, counts_.size());
                std::uint64_t bits = 0;
                for (std::size_t i = w * 64; i < end; ++i) {
                    const std::int64_t c = other.counts_[i];
                    counts_[i] += c;
                    bits |= static_cast<std::uint64_t>(c != 0) << (i & 63);
                }
                nonzero_[w] |= bits;
            }
        }
    } else if (other.max_index_ >= other.min_index_) {
        const auto last = static_cast<std::size_t>(other.max_index_) >> 6;
        for (auto w = static_cast<std::size_t>(other.min_index_) >> 6; w <= last; ++w) {
            const std::uint64_t word = other.nonzero_[w];
            nonzero_[w] |= word;
            for (std::uint64_t bits = word; bits != 0; bits &= bits - 1) {
                const std::size_t i = w * 64 + static_cast<std::size_t>(__builtin_ctzll(bits));
                counts_[i] += other.counts_[i];
            }
        }
    }
    total_count_ += other.total_count_;
    overflow_count_ += other.overflow_count_;
    min_index_ = std::min(min_index_, other.min_index_);
    max_index_ = std::max(max_index_, other.max_index_);
}

void HdrHistogram::subtract(const HdrHistogram& other) {
    if (!sameConfiguration(other)) {
        throw std::invalid_argument("HdrHistogram::subtract: histograms have different configurations");
    }
    // Check everything before touching anything, so a refused subtract leaves us intact.
    if (other.overflow_count_ > overflow_count_) {
        throw std::invalid_argument("HdrHistogram::subtract: overflow count would become negative");
    }
    other.visitNonZero([&](std::int32_t i, std::int64_t c) {
        if (c > counts_[static_cast<std::size_t>(i)]) {
            throw std::invalid_argument("HdrHistogram::subtract: count at index " + std::to_string(i) +
                                        " would become negative");
        }
    });
    other.visitNonZero([&](std::int32_t i, std::int64_t c) {
        if ((counts_[static_cast<std::size_t>(i)] -= c) == 0) {
            markZero(i);
        }
    });
    overflow_count_ -= other.overflow_count_;
    total_count_ = 0;
    std::int32_t new_min = counts_len_;
    std::int32_t new_max = -1;
    visitNonZero([&](std::int32_t i, std::int64_t c) {
        total_count_ += c;
        new_min = std::min(new_min, i);
        new_max = i;
    });
    min_index_ = new_min;
    max_index_ = new_max;
}

std::int64_t HdrHistogram::valueAtPercentile(double percentile) const {
    if (total_count_ == 0) {
        return 0;
    }
    if (!(percentile >= 0.0)) {  // also catches NaN
        percentile = 0.0;
    }
    percentile = std::min(percentile, 100.0);
    const auto target = std::max<std::int64_t>(
        1, static_cast<std::int64_t>(percentile / 100.0 * static_cast<double>(total_count_) + 0.5));
    std::int64_t cumulative = 0;
    for (std::int32_t i = min_index_; i <= max_index_; ++i) {
        cumulative += counts_[static_cast<std::size_t>(i)];
        if (cumulative >= target) {
            return highestEquivalentValue(valueAtIndex(i));
        }
    }
    return highestEquivalentValue(valueAtIndex(max_index_));
}

std::int64_t HdrHistogram::min() const {
    return total_count_ == 0 ? 0 : lowestEquivalentValue(valueAtIndex(min_index_));
}

std::int64_t HdrHistogram::max() const {
    return total_count_ == 0 ? 0 : highestEquivalentValue(valueAtIndex(max_index_));
}

double HdrHistogram::mean() const {
    if (total_count_ == 0) {
        return 0.0;
    }
    double sum = 0.0;
    visitNonZero([&](std::int32_t i, std::int64_t c) {
        sum += static_cast<double>(c) * static_cast<double>(medianEquivalentValue(valueAtIndex(i)));
    });
    return sum / static_cast<double>(total_count_);
}

double HdrHistogram::stddev() const {
    if (total_count_ == 0) {
        return 0.0;
    }
    const double m = mean();
    double sum_sq = 0.0;
    visitNonZero([&](std::int32_t i, std::int64_t c) {
        const double d = static_cast<double>(medianEquivalentValue(valueAtIndex(i))) - m;
        sum_sq += static_cast<double>(c) * d * d;
    });
    return std::sqrt(sum_sq / static_cast<double>(total_count_));
}

std::int64_t HdrHistogram::lowestEquivalentValue(std::int64_t value) const {
    const auto v = static_cast<std::uint64_t>(std::max<std::int64_t>(value, 0));
    const std::int32_t pow2_ceiling = 64 - __builtin_clzll(v | static_cast<std::uint64_t>(sub_bucket_mask_));
    const std::int32_t shift = pow2_ceiling - (sub_bucket_half_count_magnitude_ + 1);
    return static_cast<std::int64_t>((v >> shift) << shift);
}

std::int64_t HdrHistogram::sizeOfEquivalentValueRange(std::int64_t value) const {
    const auto v = static_cast<std::uint64_t>(std::max<std::int64_t>(value, 0));
    const std::int32_t pow2_ceiling = 64 - __builtin_clzll(v | static_cast<std::uint64_t>(sub_bucket_mask_));
    const std::int32_t bucket_index = pow2_ceiling - unit_magnitude_ - (sub_bucket_half_count_magnitude_ + 1);
    const std::uint64_t sub_bucket_index = v >> (bucket_index + unit_magnitude_);
    // As HdrHistogram: a sub-bucket index past the bucket belongs to the next bucket.
    const std::int32_t adjusted_bucket =
        sub_bucket_index >= static_cast<std::uint64_t>(sub_bucket_count_) ? bucket_index + 1 : bucket_index;
    return std::int64_t{1} << (unit_magnitude_ + adjusted_bucket);
}

std::int64_t HdrHistogram::highestEquivalentValue(std::int64_t value) const {
    const std::int64_t lowest = lowestEquivalentValue(value);
    const std::int64_t size = sizeOfEquivalentValueRange(value);
    // Saturate: the top slot of an int64-wide histogram ends at INT64_MAX.
    if (lowest > kInt64Max - size) {
        return kInt64Max;
    }
    return lowest + size - 1;
}

std::int64_t HdrHistogram::medianEquivalentValue(std::int64_t value) const {
    return lowestEquivalentValue(value) + (sizeOfEquivalentValueRange(value) >> 1);
}

bool HdrHistogram::valuesAreEquivalent(std::int64_t a, std::int64_t b) const {
    return lowestEquivalentValue(a) == lowestEquivalentValue(b);
}

void HdrHistogram::forEachNonZero(const std::function<void(std::int32_t, std::int64_t)>& fn) const {
    visitNonZero(fn);
}

std::size_t HdrHistogram::memoryBytes() const {
    return sizeof(*this) + counts_.size() * sizeof(std::int64_t) + nonzero_.capacity() * sizeof(std::uint64_t);
}

std::size_t HdrHistogram::residentBytes() const {
    return sizeof(*this) + counts_.residentBytes() + nonzero_.capacity() * sizeof(std::uint64_t);
}

}  // namespace rollguard::agent
