#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace re2 {
class RE2;
}

namespace rollguard::rules {

/// One label matcher, Prometheus style. A missing label has the value "" (as in
/// Prometheus), so `route != "x"` matches a series without a route label.
/// Regexes are RE2 (Prometheus's syntax, e.g. `(?i)canary`) and anchored: the whole
/// value must match (`=~"/api/"` does not match "/api/v1"; write `=~"/api/.*"`). RE2
/// matches in linear time, whatever the pattern. Immutable after construction;
/// thread-safe to share (RE2 is).
struct LabelMatcher {
    enum class Op { Equal, NotEqual, Regex, NotRegex };

    std::string label;
    Op op = Op::Equal;
    std::string value;  ///< the literal or the regex source
    std::shared_ptr<const re2::RE2> regex;  ///< compiled for Regex / NotRegex

    /// Builds a matcher; for regex ops compiles `value` (RE2 syntax, anchored as
    /// `^(?:value)$`, `.` matches newline like Prometheus). Returns nullptr and sets
    /// `error` to RE2's message when the regex does not compile.
    static std::unique_ptr<LabelMatcher> make(std::string label, Op op, std::string value, std::string& error);

    bool matches(std::string_view label_value) const;
};

const char* toString(LabelMatcher::Op op);

/// The "__other__" group every label set beyond a rule's `max_groups` falls into.
inline constexpr std::string_view kOtherGroup = "__other__";

/// Which series a rule reads and how it splits them into independent alert states.
/// Pure value type; thread-safe to share once built.
struct Selection {
    std::vector<LabelMatcher> matchers;   ///< all must match (AND)
    std::vector<std::string> group_by;    ///< one alert state per distinct value tuple
    std::size_t max_groups = 50;          ///< distinct groups kept; the rest share kOtherGroup

    bool empty() const { return matchers.empty() && group_by.empty(); }

    /// True when every matcher accepts the label set given as parallel name/value lists.
    bool matches(const std::vector<std::string>& names, const std::vector<std::string>& values) const;

    /// The group key of a label set: `label=value` pairs in `group_by` order joined with
    /// ',' (a missing label is ""), e.g. "route=/api/a,variant=canary"; "" when the rule is
    /// not grouped. Not capped: see GroupTable for the cap.
    std::string groupKey(const std::vector<std::string>& names, const std::vector<std::string>& values) const;
};

/// Assigns group keys under a rule's `max_groups` cap: the first `max_groups` distinct
/// keys are kept, every later one is routed to kOtherGroup and counted. The agent keeps
/// one per rule to route label sets to streams. Not thread-safe; one owner.
class GroupTable {
public:
    explicit GroupTable(const Selection& selection) : selection_(&selection) {}

    /// The (capped) group of a label set, or nullopt-like "" with matched=false when the
    /// set does not match the selection.
    struct Route {
        bool matched = false;
        std::string group;
    };
    Route route(const std::vector<std::string>& names, const std::vector<std::string>& values);

    std::size_t groups() const { return known_.size(); }
    /// Label sets routed to kOtherGroup so far (one count per call).
    std::uint64_t overflowed() const { return overflowed_; }

private:
    const Selection* selection_;
    std::map<std::string, bool, std::less<>> known_;
    std::uint64_t overflowed_ = 0;
};

}  // namespace rollguard::rules
