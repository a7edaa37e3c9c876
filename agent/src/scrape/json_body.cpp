// JsonBody: the `json` scrape sources' document check and JSON Pointer lookups.
//
// simdjson's DOM parser, not On-Demand: it validates the whole document, trailing
// content included, in one pass (On-Demand validated only what it visited, so
// `{"x":1}{"x":2}` passed as one document), and a lookup of the root value is plain data
// (On-Demand's scalar getters on the root value of a document are undefined behaviour).
// Both were found by tests/fuzz/fuzz_json_endpoint.cpp.
#include "rollguard/agent/json_body.h"

#include <charconv>
#include <system_error>

#include <simdjson.h>

namespace rollguard::agent {

struct JsonBody::Impl {
    simdjson::dom::parser parser;
    simdjson::dom::element root;  // valid while loaded (it points into parser)
    bool loaded = false;
};

JsonBody::JsonBody() : impl_(std::make_unique<Impl>()) {}
JsonBody::~JsonBody() = default;

bool JsonBody::load(std::string_view body) {
    impl_->loaded = false;
    const simdjson::padded_string text(body);
    simdjson::dom::element root;
    if (impl_->parser.parse(text).get(root) != simdjson::SUCCESS) {
        return false;
    }
    if (!root.is_object() && !root.is_array()) {
        return false;
    }
    impl_->root = root;
    impl_->loaded = true;
    return true;
}

std::optional<double> JsonBody::numberAt(const std::string& pointer, std::string& error) {
    if (!impl_->loaded) {
        error = "no JSON document";
        return std::nullopt;
    }
    simdjson::dom::element v;
    if (auto e = impl_->root.at_pointer(pointer).get(v); e != simdjson::SUCCESS) {
        error = e == simdjson::NO_SUCH_FIELD || e == simdjson::INDEX_OUT_OF_BOUNDS
                    ? "no value at " + pointer
                    : std::string(simdjson::error_message(e)) + " at " + pointer;
        return std::nullopt;
    }
    double d = 0.0;
    if (v.get_double().get(d) == simdjson::SUCCESS) {
        return d;
    }
    bool b = false;
    if (v.get_bool().get(b) == simdjson::SUCCESS) {
        return b ? 1.0 : 0.0;
    }
    std::string_view s;
    if (v.get_string().get(s) == simdjson::SUCCESS) {
        const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
        if (ec == std::errc{} && ptr == s.data() + s.size()) {
            return d;
        }
    }
    error = "value at " + pointer + " is not a number";
    return std::nullopt;
}

}  // namespace rollguard::agent
