// json_file and toml_file hooks: set values by JSON Pointer in a flag file, atomically.
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "rollguard/agent/hooks.h"
#include "temp_dir.h"

using rollguard::agent::applyJsonFile;
using rollguard::agent::applyTomlFile;
using rollguard::agent::BreachEvent;
using rollguard::agent::FlagFileEdit;
using rollguard::agent::FlagSetting;
using rollguard::agent::HookConfig;
using rollguard::agent::HookResult;
using rollguard::agent::HookRunner;
using rollguard::agent::HookType;
using rollguard::agent::makeHook;
using rollguard::agent::parseJsonPointer;
using rollguard::agent::rewriteJsonText;
using rollguard::agent::rewriteTomlText;
using rollguard::testing::readFile;
using rollguard::testing::TempDir;
using rollguard::testing::writeFile;

namespace {

using Settings = std::vector<FlagSetting>;
using Pointers = std::vector<std::string>;

FlagFileEdit json(const std::string& text, const Settings& set, const Pointers& unset = {}) {
    return rewriteJsonText(text, set, unset, "flags.json");
}

FlagFileEdit toml(const std::string& text, const Settings& set, const Pointers& unset = {}) {
    return rewriteTomlText(text, set, unset, "flags.toml");
}

struct stat statOf(const std::filesystem::path& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return st;
}

std::set<std::string> listDir(const std::filesystem::path& dir) {
    std::set<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        names.insert(e.path().filename().string());
    }
    return names;
}

HookConfig flagHook(HookType type, const std::filesystem::path& path, Settings set) {
    HookConfig c;
    c.name = "flag-off";
    c.type = type;
    c.path = path.string();
    c.timeout = std::chrono::seconds{2};
    c.flag_set = std::move(set);
    return c;
}

const std::string kFlagsJson =
    "{\n"
    "  \"service\": \"checkout\",\n"
    "  \"flags\": {\n"
    "    \"phase_4_deployment\": {\"enabled\": true, \"owner\": \"team-a\"},\n"
    "    \"legacy\": {\"enabled\": false}\n"
    "  },\n"
    "  \"rollout_percentage\": 25,\n"
    "  \"ratio\": 1.50,\n"
    "  \"big\": 123456789012345678901234567890,\n"
    "  \"tiny\": 1E-7,\n"
    "  \"list\": [1, 2.0, \"x\"]\n"
    "}\n";

}  // namespace

// ---- JSON Pointers ------------------------------------------------------------------

TEST_CASE("parseJsonPointer splits segments and decodes ~0 and ~1", "[hooks][flag_file]") {
    CHECK(parseJsonPointer("/flags/phase_4/enabled") == std::vector<std::string>{"flags", "phase_4", "enabled"});
    CHECK(parseJsonPointer("/a~1b/c~0d/~01") == std::vector<std::string>{"a/b", "c~d", "~1"});
    CHECK(parseJsonPointer("/") == std::vector<std::string>{""});
    CHECK(parseJsonPointer("/a//b") == std::vector<std::string>{"a", "", "b"});
    std::string why;
    CHECK_FALSE(parseJsonPointer("flags/x", &why));
    CHECK(why == "a JSON Pointer starts with '/', e.g. \"/flags/x\"");
    CHECK_FALSE(parseJsonPointer("", &why));
    CHECK_FALSE(parseJsonPointer("/a~2", &why));
    CHECK(why == "'~' must be followed by 0 (for '~') or 1 (for '/')");
    CHECK_FALSE(parseJsonPointer("/a~", &why));
}

// ---- rewriteJsonText ----------------------------------------------------------------

TEST_CASE("json_file sets nested values and creates missing objects", "[hooks][flag_file]") {
    const auto r = json("{\"a\": 1}", {{"/flags/phase_4_deployment/enabled", false}, {"/rollout_percentage", std::int64_t{0}},
                                       {"/flags/phase_4_deployment/note", std::string("off \"now\"")},
                                       {"/fraction", 0.0}});
    REQUIRE(r.ok);
    CHECK(r.changed);
    CHECK(r.text ==
          "{\n"
          "  \"a\": 1,\n"
          "  \"flags\": {\n"
          "    \"phase_4_deployment\": {\n"
          "      \"enabled\": false,\n"
          "      \"note\": \"off \\\"now\\\"\"\n"
          "    }\n"
          "  },\n"
          "  \"rollout_percentage\": 0,\n"
          "  \"fraction\": 0.0\n"
          "}\n");
}

TEST_CASE("json_file keeps key order and the text of untouched numbers", "[hooks][flag_file]") {
    const auto r = json(kFlagsJson, {{"/flags/phase_4_deployment/enabled", false}, {"/rollout_percentage", std::int64_t{0}}});
    REQUIRE(r.ok);
    CHECK(r.changed);
    CHECK(r.text ==
          "{\n"
          "  \"service\": \"checkout\",\n"
          "  \"flags\": {\n"
          "    \"phase_4_deployment\": {\n"
          "      \"enabled\": false,\n"
          "      \"owner\": \"team-a\"\n"
          "    },\n"
          "    \"legacy\": {\n"
          "      \"enabled\": false\n"
          "    }\n"
          "  },\n"
          "  \"rollout_percentage\": 0,\n"
          "  \"ratio\": 1.50,\n"
          "  \"big\": 123456789012345678901234567890,\n"
          "  \"tiny\": 1E-7,\n"
          "  \"list\": [\n"
          "    1,\n"
          "    2.0,\n"
          "    \"x\"\n"
          "  ]\n"
          "}\n");
    // Its own output reads back to the same document.
    const auto again = json(r.text, {{"/flags/phase_4_deployment/enabled", false}});
    REQUIRE(again.ok);
    CHECK_FALSE(again.changed);
    CHECK(again.text == r.text);
}

TEST_CASE("json_file changes nothing when values already match", "[hooks][flag_file]") {
    // Numbers compare by value, strings after unescaping: no rewrite, text untouched.
    const std::string in = "{\"n\": 0.0, \"f\": 1.50, \"big\": 5e0, \"s\": \"a\\u0062\", \"b\": true}";
    const auto r = json(in, {{"/n", std::int64_t{0}}, {"/f", 1.5}, {"/big", std::int64_t{5}}, {"/s", std::string("ab")},
                             {"/b", true}},
                        {"/absent", "/n/below_a_number"});
    REQUIRE(r.ok);
    CHECK_FALSE(r.changed);
    CHECK(r.text == in);

    const auto bigger = json("{\"n\": 123456789012345678901234567890}", {{"/n", std::int64_t{1}}});
    REQUIRE(bigger.ok);
    CHECK(bigger.changed);
    CHECK(bigger.text == "{\n  \"n\": 1\n}\n");
}

TEST_CASE("json_file unset removes members and leaves absent ones alone", "[hooks][flag_file]") {
    const auto r = json("{\"flags\": {\"old_flag\": true, \"keep\": 1}, \"x\": 2}", {}, {"/flags/old_flag", "/nope/deeper"});
    REQUIRE(r.ok);
    CHECK(r.changed);
    CHECK(r.text == "{\n  \"flags\": {\n    \"keep\": 1\n  },\n  \"x\": 2\n}\n");

    const auto again = json(r.text, {}, {"/flags/old_flag"});
    REQUIRE(again.ok);
    CHECK_FALSE(again.changed);

    const auto element = json("{\"list\": [1, 2]}", {}, {"/list/0"});
    CHECK_FALSE(element.ok);
    CHECK(element.error ==
          "cannot unset /list/0: removing array elements is not supported (a second run would remove the next one)");
}

TEST_CASE("json_file pointer escapes address keys with / and ~", "[hooks][flag_file]") {
    const auto r = json("{\"a/b\": {\"c~d\": 1}}", {{"/a~1b/c~0d", std::int64_t{2}}, {"/new~1key", true}});
    REQUIRE(r.ok);
    CHECK(r.text == "{\n  \"a/b\": {\n    \"c~d\": 2\n  },\n  \"new/key\": true\n}\n");
}

TEST_CASE("json_file array indexes replace existing elements only", "[hooks][flag_file]") {
    const std::string in = "{\"list\": [{\"on\": true}, 2]}";
    const auto r = json(in, {{"/list/0/on", false}, {"/list/1", std::string("two")}});
    REQUIRE(r.ok);
    CHECK(r.text == "{\n  \"list\": [\n    {\n      \"on\": false\n    },\n    \"two\"\n  ]\n}\n");

    const auto out_of_range = json(in, {{"/list/2", true}});
    CHECK_FALSE(out_of_range.ok);
    CHECK(out_of_range.error == "cannot set /list/2: index 2 is out of range (/list has 2 elements)");
    const auto append = json(in, {{"/list/-", true}});
    CHECK_FALSE(append.ok);
    CHECK(append.error == "cannot set /list/-: '-' (append) is not supported: every run would append again");
    const auto name = json(in, {{"/list/first", true}});
    CHECK_FALSE(name.ok);
    CHECK(name.error == "cannot set /list/first: /list is an array and 'first' is not an index");
}

TEST_CASE("json_file setting through a scalar fails and names the pointer", "[hooks][flag_file]") {
    const auto r = json("{\"flags\": {\"x\": 3}}", {{"/flags/x/enabled", false}});
    CHECK_FALSE(r.ok);
    CHECK(r.error == "cannot set /flags/x/enabled: /flags/x is a number, not an object");
    const auto null_member = json("{\"flags\": null}", {{"/flags/x", false}});
    CHECK_FALSE(null_member.ok);
    CHECK(null_member.error == "cannot set /flags/x: /flags is null, not an object");
    const auto root = json("[1]", {{"/a", false}});
    CHECK_FALSE(root.ok);
    CHECK(root.error == "cannot set /a: the document is an array and 'a' is not an index");
    const auto scalar_root = json("7", {{"/a", false}});
    CHECK_FALSE(scalar_root.ok);
    CHECK(scalar_root.error == "cannot set /a: the document is a number, not an object");
}

TEST_CASE("json_file refuses invalid JSON with line and column", "[hooks][flag_file]") {
    const auto errorOf = [](const std::string& text) {
        const auto r = json(text, {{"/a", true}});
        CHECK_FALSE(r.ok);
        return r.error;
    };
    CHECK(errorOf("{\n  \"a\": true,\n}") == "flags.json:3:1: unexpected '}' (expected a key in double quotes)");
    CHECK(errorOf("{\"a\": tru}") == "flags.json:1:7: invalid literal (expected true)");
    CHECK(errorOf("{\"a\": 01}") == "flags.json:1:7: invalid number: no leading zeros");
    CHECK(errorOf("{\"a\": 1.}") == "flags.json:1:9: invalid number: expected a digit after '.'");
    CHECK(errorOf("{\"a\": \"x}") == "flags.json:1:7: unterminated string");
    CHECK(errorOf("{\"a\": \"\\q\"}") == "flags.json:1:8: invalid escape \\q in a string");
    CHECK(errorOf("{\"a\": \"\\ud800\"}") == "flags.json:1:8: high surrogate in \\u escape without a low surrogate after it");
    CHECK(errorOf("{\"a\": \"\xff\"}") == "flags.json:1:8: invalid UTF-8 in a string");
    CHECK(errorOf("{\"a\": 1} x") == "flags.json:1:10: unexpected 'x' after the end of the document");
    CHECK(errorOf("{\"a\" 1}") == "flags.json:1:6: unexpected '1' (expected ':')");
    CHECK(errorOf("// comment\n{}") == "flags.json:1:1: unexpected '/' (expected a value)");
    CHECK(errorOf("  \n") == "flags.json:2:1: empty document (expected a JSON value, e.g. {})");
    CHECK(errorOf(std::string(300, '[') + std::string(300, ']')) == "flags.json:1:258: nested deeper than 256 levels");
}

TEST_CASE("json_file decodes escapes and keeps duplicate keys once, last value wins", "[hooks][flag_file]") {
    const auto r = json("{\"k\": 1, \"s\": \"\\ud83d\\ude00 \\u00e9\", \"k\": 2}", {{"/k", std::int64_t{2}},
                                                                                    {"/s", std::string("\xF0\x9F\x98\x80 \xC3\xA9")}});
    REQUIRE(r.ok);
    CHECK_FALSE(r.changed);  // k is already 2 (the last one), s already the decoded text

    const auto set = json("{\"k\": 1, \"other\": true, \"k\": 2}", {{"/k", std::int64_t{3}}});
    REQUIRE(set.ok);
    CHECK(set.text == "{\n  \"k\": 3,\n  \"other\": true\n}\n");
}

// ---- applyJsonFile --------------------------------------------------------------------

TEST_CASE("applyJsonFile rewrites atomically, keeps mode 0640 and writes a backup", "[hooks][flag_file]") {
    TempDir dir;
    // Messages name the resolved path; resolve the temp dir the same way.
    const auto path = std::filesystem::canonical(dir.path()) / "feature_flags.json";
    writeFile(path, kFlagsJson);
    REQUIRE(::chmod(path.c_str(), 0640) == 0);

    HookConfig config = flagHook(HookType::JsonFile, path,
                                 {{"/flags/phase_4_deployment/enabled", false}, {"/rollout_percentage", std::int64_t{0}}});
    config.unset = {"/flags/legacy"};
    const auto result = applyJsonFile(config);
    REQUIRE(result.ok);
    CHECK(result.message ==
          "set /flags/phase_4_deployment/enabled=false, /rollout_percentage=0; unset /flags/legacy in " + path.string());
    const std::string written = readFile(path);
    CHECK(written.find("\"enabled\": false") != std::string::npos);
    CHECK(written.find("\"legacy\"") == std::string::npos);
    CHECK(written.find("\"ratio\": 1.50,") != std::string::npos);
    CHECK((statOf(path).st_mode & 07777) == 0640);
    CHECK(readFile(dir / "feature_flags.json.rollguard.bak") == kFlagsJson);
    CHECK((statOf(dir / "feature_flags.json.rollguard.bak").st_mode & 07777) == 0640);
    CHECK(listDir(dir.path()) == std::set<std::string>{"feature_flags.json", "feature_flags.json.rollguard.bak"});

    SECTION("a second identical run changes nothing and says so") {
        const auto before = statOf(path);
        const auto again = applyJsonFile(config);
        REQUIRE(again.ok);
        CHECK(again.message == "already up to date: " + path.string());
        const auto after = statOf(path);
        CHECK(after.st_ino == before.st_ino);
        CHECK(after.st_mtim.tv_sec == before.st_mtim.tv_sec);
        CHECK(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
        CHECK(readFile(path) == written);
        CHECK(readFile(dir / "feature_flags.json.rollguard.bak") == kFlagsJson);
    }
    SECTION("without backup no backup is written") {
        std::filesystem::remove(dir / "feature_flags.json.rollguard.bak");
        config.backup = false;
        config.flag_set = {{"/rollout_percentage", std::int64_t{10}}};
        config.unset = {};
        REQUIRE(applyJsonFile(config).ok);
        CHECK(listDir(dir.path()) == std::set<std::string>{"feature_flags.json"});
    }
}

TEST_CASE("applyJsonFile leaves the file untouched when it cannot apply", "[hooks][flag_file]") {
    TempDir dir;
    const auto path = std::filesystem::canonical(dir.path()) / "flags.json";

    SECTION("setting through a scalar") {
        const std::string original = "{\"flags\": {\"x\": 3}}";
        writeFile(path, original);
        const auto r = applyJsonFile(flagHook(HookType::JsonFile, path, {{"/flags/x/enabled", false}}));
        CHECK_FALSE(r.ok);
        CHECK(r.message == "cannot set /flags/x/enabled: /flags/x is a number, not an object");
        CHECK(readFile(path) == original);
    }
    SECTION("invalid JSON") {
        const std::string original = "{\n  \"flags\": {\"x\": 3,}\n}\n";
        writeFile(path, original);
        const auto r = applyJsonFile(flagHook(HookType::JsonFile, path, {{"/flags/x", std::int64_t{0}}}));
        CHECK_FALSE(r.ok);
        CHECK(r.message == path.string() + ":2:20: unexpected '}' (expected a key in double quotes)");
        CHECK(readFile(path) == original);
    }
    CHECK(listDir(dir.path()) == std::set<std::string>{"flags.json"});
}

TEST_CASE("applyJsonFile refuses a missing file unless create is set, then makes it 0600", "[hooks][flag_file]") {
    TempDir dir;
    const auto path = std::filesystem::canonical(dir.path()) / "flags.json";
    HookConfig config = flagHook(HookType::JsonFile, path, {{"/flags/new_checkout", false}});

    const auto refused = applyJsonFile(config);
    CHECK_FALSE(refused.ok);
    CHECK(refused.message == path.string() + " does not exist (set create = true to create it)");
    CHECK(listDir(dir.path()).empty());

    config.create = true;
    const auto created = applyJsonFile(config);
    REQUIRE(created.ok);
    CHECK(created.message == "created; set /flags/new_checkout=false in " + path.string());
    CHECK(readFile(path) == "{\n  \"flags\": {\n    \"new_checkout\": false\n  }\n}\n");
    CHECK((statOf(path).st_mode & 07777) == 0600);
    CHECK(listDir(dir.path()) == std::set<std::string>{"flags.json"});  // nothing to back up

    SECTION("a missing file with only unsets is created empty") {
        std::filesystem::remove(path);
        config.flag_set = {};
        config.unset = {"/flags/old"};
        REQUIRE(applyJsonFile(config).ok);
        CHECK(readFile(path) == "{}\n");
    }
}

TEST_CASE("applyJsonFile with follow_symlinks edits the target of a symlink and keeps the link", "[hooks][flag_file]") {
    TempDir dir;
    const auto target = dir / "release-flags.json";
    const auto link = dir / "flags.json";
    writeFile(target, "{\"on\": true}");
    std::filesystem::create_symlink(target, link);
    HookConfig config = flagHook(HookType::JsonFile, link, {{"/on", false}});
    config.backup = false;
    config.follow_symlinks = true;
    REQUIRE(applyJsonFile(config).ok);
    CHECK(std::filesystem::is_symlink(link));
    CHECK(readFile(target) == "{\n  \"on\": false\n}\n");
}

// ---- toml_file ------------------------------------------------------------------------

TEST_CASE("toml_file sets values by pointer and keeps their TOML type", "[hooks][flag_file]") {
    const std::string in =
        "# flags for checkout\n"
        "service = \"checkout\"\n"
        "\n"
        "[phase_4]\n"
        "enabled = true   # turned on 2024-05-01\n"
        "rollout_percentage = 25\n";
    const auto r = toml(in, {{"/phase_4/enabled", false}, {"/phase_4/rollout_percentage", std::int64_t{0}},
                             {"/phase_4/fraction", 0.0}, {"/limits/max", std::int64_t{3}}, {"/mode", std::string("safe")}});
    REQUIRE(r.ok);
    CHECK(r.changed);
    CHECK(r.text ==
          "mode = 'safe'\n"
          "service = 'checkout'\n"
          "\n"
          "[limits]\n"
          "max = 3\n"
          "\n"
          "[phase_4]\n"
          "enabled = false\n"
          "fraction = 0.0\n"
          "rollout_percentage = 0\n");

    const auto again = toml(r.text, {{"/phase_4/enabled", false}, {"/phase_4/rollout_percentage", std::int64_t{0}},
                                     {"/phase_4/fraction", 0.0}});
    REQUIRE(again.ok);
    CHECK_FALSE(again.changed);
    CHECK(again.text == r.text);

    // The type counts: a float 0.0 is not the integer 0.
    const auto retyped = toml("[phase_4]\nrollout_percentage = 0.0\n", {{"/phase_4/rollout_percentage", std::int64_t{0}}});
    REQUIRE(retyped.ok);
    CHECK(retyped.changed);
    CHECK(retyped.text == "[phase_4]\nrollout_percentage = 0\n");
}

TEST_CASE("toml_file unset, arrays and setting through a scalar", "[hooks][flag_file]") {
    const std::string in = "a = 1\nlist = [true, false]\n[[rules]]\nname = 'x'\non = true\n[t]\nold = 1\nkeep = 2\n";
    const auto r = toml(in, {{"/list/1", true}, {"/rules/0/on", false}}, {"/t/old", "/absent/key"});
    REQUIRE(r.ok);
    // toml++'s order: plain values, then tables, then arrays of tables.
    CHECK(r.text == "a = 1\nlist = [ true, true ]\n\n[t]\nkeep = 2\n\n[[rules]]\nname = 'x'\non = false\n");

    const auto through = toml(in, {{"/a/b", true}});
    CHECK_FALSE(through.ok);
    CHECK(through.error == "cannot set /a/b: /a is an integer, not a table");
    const auto range = toml(in, {{"/list/5", true}});
    CHECK_FALSE(range.ok);
    CHECK(range.error == "cannot set /list/5: index 5 is out of range (/list has 2 elements)");
}

TEST_CASE("toml_file refuses invalid TOML with line and column and leaves the file", "[hooks][flag_file]") {
    const auto bad = toml("[phase_4]\nenabled = \n", {{"/phase_4/enabled", false}});
    CHECK_FALSE(bad.ok);
    CHECK(bad.error.rfind("flags.toml:2:", 0) == 0);

    TempDir dir;
    const auto path = std::filesystem::canonical(dir.path()) / "flags.toml";
    const std::string original = "[phase_4\nenabled = true\n";
    writeFile(path, original);
    const auto r = applyTomlFile(flagHook(HookType::TomlFile, path, {{"/phase_4/enabled", false}}));
    CHECK_FALSE(r.ok);
    CHECK(r.message.rfind(path.string() + ":1:", 0) == 0);
    CHECK(readFile(path) == original);
    CHECK(listDir(dir.path()) == std::set<std::string>{"flags.toml"});
}

TEST_CASE("applyTomlFile writes, backs up, keeps the mode and is idempotent", "[hooks][flag_file]") {
    TempDir dir;
    const auto path = std::filesystem::canonical(dir.path()) / "flags.toml";
    const std::string original = "[phase_4]\nenabled = true\n";
    writeFile(path, original);
    REQUIRE(::chmod(path.c_str(), 0640) == 0);
    const HookConfig config = flagHook(HookType::TomlFile, path, {{"/phase_4/enabled", false}});

    const auto first = applyTomlFile(config);
    REQUIRE(first.ok);
    CHECK(first.message == "set /phase_4/enabled=false in " + path.string());
    CHECK(readFile(path) == "[phase_4]\nenabled = false\n");
    CHECK((statOf(path).st_mode & 07777) == 0640);
    CHECK(readFile(dir / "flags.toml.rollguard.bak") == original);

    const auto before = statOf(path);
    const auto second = applyTomlFile(config);
    REQUIRE(second.ok);
    CHECK(second.message == "already up to date: " + path.string());
    CHECK(statOf(path).st_ino == before.st_ino);

    HookConfig create = flagHook(HookType::TomlFile, dir / "new.toml", {{"/flags/on", false}});
    create.create = true;
    REQUIRE(applyTomlFile(create).ok);
    CHECK(readFile(dir / "new.toml") == "[flags]\non = false\n");
    CHECK((statOf(dir / "new.toml").st_mode & 07777) == 0600);
}

// ---- through makeHook and the runner ------------------------------------------------------

TEST_CASE("json_file and toml_file hooks run through makeHook and a HookRunner", "[hooks][flag_file]") {
    TempDir dir;
    writeFile(dir / "flags.json", "{\"phase_4\": {\"enabled\": true}}\n");
    writeFile(dir / "flags.toml", "[phase_4]\nenabled = true\n");
    HookConfig json_config = flagHook(HookType::JsonFile, dir / "flags.json", {{"/phase_4/enabled", false}});
    json_config.name = "json-off";
    HookConfig toml_config = flagHook(HookType::TomlFile, dir / "flags.toml", {{"/phase_4/enabled", false}});
    toml_config.name = "toml-off";

    auto json_hook = makeHook(json_config);
    REQUIRE(json_hook);
    CHECK(json_hook->type() == HookType::JsonFile);
    CHECK(json_hook->name() == "json-off");
    auto toml_hook = makeHook(toml_config);
    REQUIRE(toml_hook);
    CHECK(toml_hook->type() == HookType::TomlFile);

    std::mutex mutex;
    std::vector<std::pair<std::string, HookResult>> results;
    {
        HookRunner runner([&](const std::string& hook, const BreachEvent&, const HookResult& r) {
            std::lock_guard lock(mutex);
            results.emplace_back(hook, r);
        });
        runner.add(std::move(json_hook));
        runner.add(std::move(toml_hook));
        BreachEvent event;
        event.rule = "error-ratio";
        runner.enqueue({"json-off", "toml-off"}, event);
        runner.enqueue({"json-off", "toml-off"}, event);
        runner.waitIdle();
    }
    REQUIRE(results.size() == 4);
    for (const auto& [hook, r] : results) {
        CHECK(r.ok);
    }
    CHECK(results[0].second.message.rfind("set /phase_4/enabled=false in ", 0) == 0);
    CHECK(results[2].second.message.rfind("already up to date: ", 0) == 0);
    CHECK(results[3].second.message.rfind("already up to date: ", 0) == 0);
    CHECK(readFile(dir / "flags.json") == "{\n  \"phase_4\": {\n    \"enabled\": false\n  }\n}\n");
    CHECK(readFile(dir / "flags.toml") == "[phase_4]\nenabled = false\n");
}

TEST_CASE("toml_file sets inside inline tables and quotes keys that need it", "[hooks][flag_file]") {
    const auto r = toml("flags = { a = true }\n", {{"/flags/a", false}, {"/flags/b/c", std::int64_t{1}}, {"/x.y", true}});
    REQUIRE(r.ok);
    CHECK(r.text == "flags = { a = false, b = { c = 1 } }\n'x.y' = true\n");
    const auto again = toml(r.text, {{"/flags/a", false}, {"/flags/b/c", std::int64_t{1}}, {"/x.y", true}});
    REQUIRE(again.ok);
    CHECK_FALSE(again.changed);
}

// ---- json_file append ---------------------------------------------------------------

namespace {

using rollguard::agent::FlagAppend;
using rollguard::agent::FlagValue;
using Appends = std::vector<FlagAppend>;

FlagAppend entry(const std::string& pointer, std::vector<std::pair<std::string, FlagValue>> fields) {
    FlagAppend a;
    a.pointer = pointer;
    a.is_object = true;
    a.fields = std::move(fields);
    return a;
}

FlagAppend plain(const std::string& pointer, FlagValue value) {
    FlagAppend a;
    a.pointer = pointer;
    a.value = std::move(value);
    return a;
}

FlagFileEdit appended(const std::string& text, const Appends& append, const Settings& set = {}) {
    return rewriteJsonText(text, set, {}, append, "state.json");
}

const std::string kState =
    "{\n"
    "  \"current_percentage\": 25,\n"
    "  \"history\": [\n"
    "    {\"event\": \"step\", \"percentage\": 25},\n"
    "    {\"event\": \"rollback\", \"incident\": \"aaaa\"}\n"
    "  ],\n"
    "  \"started_at\": \"2025-10-18T09:00:00Z\"\n"
    "}\n";

}  // namespace

TEST_CASE("json_file append creates a missing array and its missing parents", "[hooks][flag_file][append]") {
    const auto r = appended("{\"a\": 1}", {entry("/history", {{"event", std::string("rollback")}, {"n", std::int64_t{1}}}),
                                           plain("/state/log", std::string("x"))});
    REQUIRE(r.ok);
    CHECK(r.changed);
    CHECK(r.text ==
          "{\n"
          "  \"a\": 1,\n"
          "  \"history\": [\n"
          "    {\n"
          "      \"event\": \"rollback\",\n"
          "      \"n\": 1\n"
          "    }\n"
          "  ],\n"
          "  \"state\": {\n"
          "    \"log\": [\n"
          "      \"x\"\n"
          "    ]\n"
          "  }\n"
          "}\n");
}

TEST_CASE("json_file append adds at the end of an existing array and keeps the rest", "[hooks][flag_file][append]") {
    const auto r = appended(kState, {entry("/history", {{"event", std::string("rollback")}, {"incident", std::string("bbbb")}})},
                            {{"/current_percentage", std::int64_t{0}}});
    REQUIRE(r.ok);
    CHECK(r.changed);
    CHECK(r.text ==
          "{\n"
          "  \"current_percentage\": 0,\n"
          "  \"history\": [\n"
          "    {\n"
          "      \"event\": \"step\",\n"
          "      \"percentage\": 25\n"
          "    },\n"
          "    {\n"
          "      \"event\": \"rollback\",\n"
          "      \"incident\": \"aaaa\"\n"
          "    },\n"
          "    {\n"
          "      \"event\": \"rollback\",\n"
          "      \"incident\": \"bbbb\"\n"
          "    }\n"
          "  ],\n"
          "  \"started_at\": \"2025-10-18T09:00:00Z\"\n"
          "}\n");
}

TEST_CASE("json_file append of an element already in the array appends nothing", "[hooks][flag_file][append]") {
    const Appends once{entry("/history", {{"event", std::string("rollback")}, {"incident", std::string("bbbb")}})};
    const auto first = appended(kState, once, {{"/current_percentage", std::int64_t{0}}});
    REQUIRE(first.ok);
    const auto second = appended(first.text, once, {{"/current_percentage", std::int64_t{0}}});
    REQUIRE(second.ok);
    CHECK_FALSE(second.changed);
    CHECK(second.text == first.text);

    // Equal means the same members with equal values, in any order; numbers by value.
    const auto reordered = appended("{\"h\": [{\"b\": 1.0, \"a\": \"x\"}]}\n",
                                    {entry("/h", {{"a", std::string("x")}, {"b", std::int64_t{1}}}), plain("/p", 2.5)});
    REQUIRE(reordered.ok);
    CHECK(reordered.text == "{\n  \"h\": [\n    {\n      \"b\": 1.0,\n      \"a\": \"x\"\n    }\n  ],\n  \"p\": [\n    2.5\n  ]\n}\n");
    // A subset or a superset of the members is another element.
    const auto subset = appended("{\"h\": [{\"a\": \"x\", \"b\": 1}]}", {entry("/h", {{"a", std::string("x")}})});
    REQUIRE(subset.ok);
    CHECK(subset.changed);
}

TEST_CASE("json_file append to a value that is not an array fails and names the pointer", "[hooks][flag_file][append]") {
    const auto object = appended(kState, {plain("/current_percentage", std::int64_t{0})});
    CHECK_FALSE(object.ok);
    CHECK(object.error == "cannot append to /current_percentage: /current_percentage is a number, not an array");
    const auto table = appended("{\"history\": {\"a\": 1}}", {plain("/history", std::int64_t{0})});
    CHECK(table.error == "cannot append to /history: /history is an object, not an array");
    const auto through = appended("{\"a\": \"s\"}", {plain("/a/history", std::int64_t{0})});
    CHECK(through.error == "cannot append to /a/history: /a is a string, not an object");
    const auto dash = appended("{\"history\": []}", {plain("/history/-", std::int64_t{0})});
    CHECK(dash.error == "cannot append to /history/-: name the array itself (\"/history\"), without \"/-\"");
    // Inside an array of arrays: an index addresses the inner array.
    const auto nested = appended("{\"runs\": [[1], [2]]}", {plain("/runs/1", std::int64_t{3})});
    REQUIRE(nested.ok);
    CHECK(nested.text == "{\n  \"runs\": [\n    [\n      1\n    ],\n    [\n      2,\n      3\n    ]\n  ]\n}\n");
}

TEST_CASE("json_file append renders placeholders and writes them JSON-escaped", "[hooks][flag_file][append]") {
    using namespace std::chrono_literals;
    TempDir dir;
    writeFile(dir / "deployment_state.json", kState);
    HookConfig config = flagHook(HookType::JsonFile, dir / "deployment_state.json", {{"/current_percentage", std::int64_t{0}}});
    config.name = "record-rollback";
    config.flag_append = {entry("/history", {{"event", std::string("rollback")},
                                             {"rule", std::string("{{rule}}")},
                                             {"at", std::string("{{fired_at}}")},
                                             {"incident", std::string("{{incident_id}}")},
                                             {"reason", std::string("{{summary}} ({{unknown}})")},
                                             {"percentage", std::int64_t{0}}})};
    BreachEvent event;
    event.rule = "error-ratio";
    event.incident_id = "0123456789abcdef";
    event.fired_at = rollguard::rules::TimePoint{1'760'778'000s};
    event.summary = "error_ratio 0.03 > 0.01 \"5m\"\nnext\\line";

    auto hook = makeHook(config);
    REQUIRE(hook);
    const HookResult first = hook->run(event);
    CHECK(first.ok);
    CHECK(first.message == "set /current_percentage=0; append to /history in " + (dir / "deployment_state.json").string());
    const std::string after = readFile(dir / "deployment_state.json");
    CHECK(after ==
          "{\n"
          "  \"current_percentage\": 0,\n"
          "  \"history\": [\n"
          "    {\n"
          "      \"event\": \"step\",\n"
          "      \"percentage\": 25\n"
          "    },\n"
          "    {\n"
          "      \"event\": \"rollback\",\n"
          "      \"incident\": \"aaaa\"\n"
          "    },\n"
          "    {\n"
          "      \"event\": \"rollback\",\n"
          "      \"rule\": \"error-ratio\",\n"
          "      \"at\": \"2025-10-18T09:00:00.000Z\",\n"
          "      \"incident\": \"0123456789abcdef\",\n"
          "      \"reason\": \"error_ratio 0.03 > 0.01 \\\"5m\\\"\\nnext\\\\line ({{unknown}})\",\n"
          "      \"percentage\": 0\n"
          "    }\n"
          "  ],\n"
          "  \"started_at\": \"2025-10-18T09:00:00Z\"\n"
          "}\n");

    // A retry of the same event records nothing more.
    const HookResult retry = hook->run(event);
    CHECK(retry.ok);
    CHECK(retry.message == "already up to date: " + (dir / "deployment_state.json").string());
    CHECK(readFile(dir / "deployment_state.json") == after);

    // Another incident is another entry.
    BreachEvent other = event;
    other.incident_id = "fedcba9876543210";
    const HookResult second = hook->run(other);
    CHECK(second.ok);
    const std::string twice = readFile(dir / "deployment_state.json");
    CHECK(twice.find("\"incident\": \"fedcba9876543210\"") != std::string::npos);
    CHECK(twice.find("\"incident\": \"0123456789abcdef\"") < twice.find("\"incident\": \"fedcba9876543210\""));
}

TEST_CASE("json_file append on a missing file with create starts from an empty object", "[hooks][flag_file][append]") {
    TempDir dir;
    HookConfig config = flagHook(HookType::JsonFile, dir / "state.json", {});
    config.create = true;
    config.flag_append = {plain("/history", std::string("{{rule}}"))};
    BreachEvent event;
    event.rule = "p95";
    const HookResult r = makeHook(config)->run(event);
    CHECK(r.ok);
    CHECK(r.message == "created; append to /history in " + (dir / "state.json").string());
    CHECK(readFile(dir / "state.json") == "{\n  \"history\": [\n    \"p95\"\n  ]\n}\n");
}

TEST_CASE("json_file hook writes rollout_percent as an integer", "[hooks][flag_file][rollout]") {
    TempDir dir;
    const auto path = std::filesystem::canonical(dir.path()) / "flags.json";
    writeFile(path, "{\n  \"rollout_percentage\": 5,\n  \"label\": \"x\"\n}\n");
    HookConfig config;
    config.name = "flag";
    config.type = HookType::JsonFile;
    config.path = path.string();
    config.timeout = std::chrono::seconds{2};
    config.flag_set = {FlagSetting{"/rollout_percentage", std::string("{{rollout_percent}}")},
                       FlagSetting{"/label", std::string("rollout at {{rollout_percent}}%")}};
    const auto hook = makeHook(config);
    BreachEvent event;
    event.rollout_percent = 50;
    event.rollout_previous_percent = 25;
    const auto result = hook->run(event);
    REQUIRE(result.ok);
    CHECK(readFile(path) == "{\n  \"rollout_percentage\": 50,\n  \"label\": \"rollout at 50%\"\n}\n");
    const auto again = hook->run(event);
    REQUIRE(again.ok);
    CHECK(again.message == "already up to date: " + path.string());

    const auto refused = hook->run(BreachEvent{});
    CHECK_FALSE(refused.ok);
    CHECK(refused.message == "{{rollout_percent}} is only set for [rollout] events: nothing changed");
    CHECK(readFile(path) == "{\n  \"rollout_percentage\": 50,\n  \"label\": \"rollout at 50%\"\n}\n");
}

TEST_CASE("toml_file hook writes rollout_percent as an integer", "[hooks][flag_file][rollout]") {
    TempDir dir;
    const auto path = dir / "flags.toml";
    writeFile(path, "[rollout]\npercent = 5\n");
    HookConfig config;
    config.name = "flag";
    config.type = HookType::TomlFile;
    config.path = path.string();
    config.timeout = std::chrono::seconds{2};
    config.flag_set = {FlagSetting{"/rollout/percent", std::string("{{rollout_percent}}")}};
    BreachEvent event;
    event.rollout_percent = 100;
    REQUIRE(makeHook(config)->run(event).ok);
    CHECK(readFile(path) == "[rollout]\npercent = 100\n");
}
