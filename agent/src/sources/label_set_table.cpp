#include <cstring>

#include "rollguard/agent/log_source.h"

namespace rollguard::agent {

LabelSetTable::LabelSetTable(std::size_t label_count, std::size_t max_sets)
    : label_count_(label_count), max_sets_(max_sets) {}

std::uint32_t LabelSetTable::intern(std::span<const std::string_view> values, bool& overflowed, bool& created) {
    overflowed = false;
    created = false;
    // Length-prefixed values: JSON strings may hold any byte, so no separator is safe.
    key_.clear();
    for (const std::string_view v : values) {
        const auto n = static_cast<std::uint32_t>(v.size());
        key_.append(reinterpret_cast<const char*>(&n), sizeof n);
        key_.append(v);
    }
    // Only this thread inserts into ids_, so finding an existing set needs no lock.
    if (const auto it = ids_.find(key_); it != ids_.end()) {
        return it->second;
    }
    if (ids_.size() >= max_sets_) {
        overflowed = true;
        if (!overflow_id_) {
            std::lock_guard lock(mutex_);
            overflow_id_ = static_cast<std::uint32_t>(sets_.size());
            sets_.emplace_back(label_count_, kOtherLabelValue);
            created = true;
        }
        return *overflow_id_;
    }
    LabelSet set;
    set.reserve(values.size());
    for (const std::string_view v : values) {
        set.emplace_back(v);
    }
    std::uint32_t id = 0;
    {
        std::lock_guard lock(mutex_);
        id = static_cast<std::uint32_t>(sets_.size());
        sets_.push_back(std::move(set));
    }
    ids_.emplace(key_, id);
    created = true;
    return id;
}

std::size_t LabelSetTable::size() const {
    std::lock_guard lock(mutex_);
    return sets_.size();
}

LabelSet LabelSetTable::labels(std::uint32_t id) const {
    std::lock_guard lock(mutex_);
    return sets_.at(id);
}

std::vector<LabelSet> LabelSetTable::all() const {
    std::lock_guard lock(mutex_);
    return sets_;
}

}  // namespace rollguard::agent
