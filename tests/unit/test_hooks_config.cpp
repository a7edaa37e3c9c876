// The [[hook]] keys of webhook and alertmanager hooks: parsed values and errors with
// line:col.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "config_diags.h"
#include "rollguard/agent/config.h"

using namespace std::chrono_literals;
using rollguard::agent::Diagnostic;
using rollguard::agent::FlagValue;
using rollguard::agent::HookConfig;
using rollguard::agent::HookType;
using rollguard::agent::LoadResult;
using rollguard::agent::parseConfig;
using rollguard::agent::WebhookFormat;

namespace {

using Strings = std::vector<std::string>;
const std::string& kPath = rollguard::testing::kConfigPath;

/// Lines 1-4: a source; 5-10: a rule using hook "h"; 11: `[[hook]]`; 12: `name = "h"`;
/// then the lines given, from line 13 (kFirstLine).
std::string withHook(const std::string& lines) {
    return "[[source]]\n"                                            // 1
           "name = \"app\"\n"                                        // 2
           "type = \"json_log\"\n"                                   // 3
           "paths = [\"app.jsonl\"]\n"                               // 4
           "[[rule]]\nname = \"r\"\nsource = \"app\"\nmetric = \"error_ratio\"\nabove = 0.05\nhooks = [\"h\"]\n"
           "[[hook]]\n"
           "name = \"h\"\n" +
           lines;
}
constexpr int kFirstLine = 13;

using rollguard::testing::errorsOf;

std::string line(int offset) {
    return std::to_string(kFirstLine + offset);
}

}  // namespace

TEST_CASE("webhook hook keys: format, secrets by file or env, spool", "[hooks][config]") {
    const LoadResult r = parseConfig("[agent]\n"
                                     "state_dir = \"/var/lib/rollguard\"\n"
                                     "external_url = \"http://web-1:9464\"\n" +
                                         withHook("type = \"webhook\"\n"
                                                  "url = \"https://events.pagerduty.com/v2/enqueue\"\n"
                                                  "format = \"pagerduty\"\n"
                                                  "routing_key_file = \"pd.key\"\n"
                                                  "bearer_token_env = \"PD_TOKEN\"\n"
                                                  "secret_file = \"/etc/rollguard/hmac\"\n"
                                                  "spool_max_entries = 50\n"
                                                  "spool_max_backoff = \"2m\"\n"
                                                  "retry_backoff = \"1s\"\n"),
                                     kPath);
    REQUIRE(r.ok());
    const HookConfig& h = r.config->hooks.at(0);
    CHECK(h.type == HookType::Webhook);
    CHECK(h.format == WebhookFormat::PagerDuty);
    CHECK(h.routing_key_file == "/etc/rollguard/pd.key");
    CHECK(h.routing_key_env.empty());
    CHECK(h.bearer_token_env == "PD_TOKEN");
    CHECK(h.secret_file == "/etc/rollguard/hmac");
    CHECK(h.spool_max_entries == 50);
    CHECK(h.spool_max_backoff == 2min);
    CHECK(h.retry_backoff == 1s);
    CHECK(h.state_dir == "/var/lib/rollguard");
    CHECK(h.external_url == "http://web-1:9464");
    CHECK(r.config->agent.external_url == "http://web-1:9464");

    const LoadResult d = parseConfig(withHook("type = \"webhook\"\nurl = \"http://x\"\n"), kPath);
    REQUIRE(d.ok());
    CHECK(d.config->hooks.at(0).format == WebhookFormat::Json);
    CHECK(d.config->hooks.at(0).spool_max_entries == 1000);
    CHECK(d.config->hooks.at(0).state_dir.empty());
}

TEST_CASE("alertmanager hook keys", "[hooks][config]") {
    const LoadResult r = parseConfig(
        withHook("type = \"alertmanager\"\nurl = \"http://am:9093\"\nresend_interval = \"30s\"\n"), kPath);
    REQUIRE(r.ok());
    CHECK(r.config->hooks.at(0).type == HookType::Alertmanager);
    CHECK(r.config->hooks.at(0).url == "http://am:9093");
    CHECK(r.config->hooks.at(0).resend_interval == 30s);
    const LoadResult d = parseConfig(withHook("type = \"alertmanager\"\nurl = \"http://am:9093\"\n"), kPath);
    REQUIRE(d.ok());
    CHECK(d.config->hooks.at(0).resend_interval == 1min);
}

TEST_CASE("webhook hook config errors point at the line and column", "[hooks][config]") {
    SECTION("a literal bearer token") {
        CHECK(errorsOf(withHook("type = \"webhook\"\nurl = \"http://x\"\nbearer_token = \"abc\"\n")) ==
              Strings{line(2) + ":1: 'bearer_token' must not be written in the config (it would end up in backups "
                                "and diffs): use bearer_token_file or bearer_token_env"});
    }
    SECTION("a literal secret or routing key") {
        CHECK(errorsOf(withHook("type = \"webhook\"\nurl = \"http://x\"\nsecret = \"abc\"\n")) ==
              Strings{line(2) + ":1: 'secret' must not be written in the config (it would end up in backups and "
                                "diffs): use secret_file"});
        CHECK(errorsOf(withHook("type = \"webhook\"\nurl = \"http://x\"\nformat = \"pagerduty\"\n"
                                "routing_key_env = \"PD\"\nrouting_key = \"abc\"\n")) ==
              Strings{line(4) + ":1: 'routing_key' must not be written in the config (it would end up in backups "
                                "and diffs): use routing_key_file or routing_key_env"});
    }
    SECTION("an unknown format") {
        CHECK(errorsOf(withHook("type = \"webhook\"\nurl = \"http://x\"\nformat = \"slak\"\n")) ==
              Strings{line(2) + ":10: 'format' must be one of json, alertmanager, slack, pagerduty; got \"slak\" (did "
                                "you mean 'slack'?)"});
    }
    SECTION("pagerduty without a routing key") {
        CHECK(errorsOf(withHook("type = \"webhook\"\nurl = \"http://x\"\nformat = \"pagerduty\"\n")) ==
              Strings{line(2) + ":10: a webhook with format = \"pagerduty\" needs 'routing_key_file' or "
                                "'routing_key_env' (the Events API v2 integration key)"});
    }
    SECTION("both a file and an env var") {
        CHECK(errorsOf(withHook("type = \"webhook\"\nurl = \"http://x\"\nbearer_token_file = \"t\"\n"
                                "bearer_token_env = \"T\"\n")) ==
              Strings{line(3) + ":20: set either 'bearer_token_file' or 'bearer_token_env', not both"});
    }
    SECTION("keys of another hook type") {
        CHECK(errorsOf(withHook("type = \"alertmanager\"\nurl = \"http://x\"\nformat = \"slack\"\n")) ==
              Strings{line(2) + ":1: 'format' is not valid for a hook of type 'alertmanager' (it belongs to webhook "
                                "hooks)"});
        CHECK(errorsOf(withHook("type = \"webhook\"\nurl = \"http://x\"\nresend_interval = \"1m\"\n")) ==
              Strings{line(2) + ":1: 'resend_interval' is not valid for a hook of type 'webhook' (it belongs to "
                                "alertmanager hooks)"});
    }
    SECTION("a credential header, in any case, in a webhook or an alertmanager hook") {
        CHECK(errorsOf(withHook("type = \"webhook\"\nurl = \"http://x\"\nheaders = { Authorization = \"Bearer t\" }\n")) ==
              Strings{line(2) + ":13: 'Authorization' must not be set in 'headers' (a secret in the config): use "
                                "bearer_token_file or bearer_token_env"});
        CHECK(errorsOf(withHook("type = \"alertmanager\"\nurl = \"http://x\"\n"
                                "headers = { \"X-Team\" = \"a\", proxy-authorization = \"Basic x\", COOKIE = \"s=1\" }\n")) ==
              Strings{line(2) + ":29: 'proxy-authorization' must not be set in 'headers' (a secret in the config): "
                                "use bearer_token_file or bearer_token_env",
                      line(2) + ":62: 'COOKIE' must not be set in 'headers' (a secret in the config): use "
                                "bearer_token_file or bearer_token_env"});
        // An environment reference does not make it acceptable: the token goes through bearer_token_env.
        CHECK(errorsOf(withHook("type = \"webhook\"\nurl = \"http://x\"\n"
                                "headers = { Authorization = \"Bearer $${TOKEN}\" }\n"))
                  .size() == 1);
    }
    SECTION("user:password@ in a hook's url or external_url") {
        CHECK(errorsOf(withHook("type = \"webhook\"\nurl = \"https://bob:pw@hooks.example.com/x\"\n")) ==
              Strings{line(1) + ":7: 'url' must not contain a user name or password (\"user:password@\"): use "
                                "bearer_token_file or bearer_token_env"});
        CHECK(errorsOf(withHook("type = \"alertmanager\"\nurl = \"http://bob@am:9093\"\n")).size() == 1);
        // An '@' after the host (path, query) is not userinfo.
        CHECK(errorsOf(withHook("type = \"webhook\"\nurl = \"http://x/to/a@b?c=d@e\"\n")).empty());
        CHECK(errorsOf("[agent]\nexternal_url = \"http://u:p@rollguard:9464\"\n" +
                       withHook("type = \"webhook\"\nurl = \"http://x\"\n")) ==
              Strings{"2:16: 'external_url' must not contain a user name or password (\"user:password@\"): it is "
                      "a link shown to people: remove it"});
    }
    SECTION("bad spool bound and external_url") {
        CHECK(errorsOf(withHook("type = \"webhook\"\nurl = \"http://x\"\nspool_max_entries = 0\n")) ==
              Strings{line(2) + ":21: 'spool_max_entries' must be between 1 and 1000000, got 0"});
        CHECK(errorsOf("[agent]\nexternal_url = \"web-1:9464\"\n" +
                       withHook("type = \"webhook\"\nurl = \"http://x\"\n")) ==
              Strings{"2:16: 'external_url' must start with http:// or https://, got \"web-1:9464\""});
    }
}

TEST_CASE("json_file and toml_file hook keys", "[hooks][config][flag_file]") {
    const LoadResult r = parseConfig(
        withHook("type = \"json_file\"\n"
                 "path = \"config/feature_flags.json\"\n"
                 "set = { \"/flags/phase_4_deployment/enabled\" = false, \"/rollout_percentage\" = 0, \"/a~1b\" = 0.5, "
                 "\"/mode\" = \"safe\" }\n"
                 "unset = [\"/flags/old_flag\"]\n"
                 "create = true\n"
                 "backup = false\n"),
        kPath);
    REQUIRE(r.ok());
    REQUIRE(r.config->hooks.size() == 1);
    const HookConfig& h = r.config->hooks[0];
    CHECK(h.type == HookType::JsonFile);
    CHECK(h.path == "/etc/rollguard/config/feature_flags.json");
    // In the order written, each value with its TOML type.
    REQUIRE(h.flag_set.size() == 4);
    CHECK(h.flag_set[0].pointer == "/flags/phase_4_deployment/enabled");
    CHECK(h.flag_set[0].value == FlagValue{false});
    CHECK(h.flag_set[1].pointer == "/rollout_percentage");
    CHECK(h.flag_set[1].value == FlagValue{std::int64_t{0}});
    CHECK(h.flag_set[2].pointer == "/a~1b");
    CHECK(h.flag_set[2].value == FlagValue{0.5});
    CHECK(h.flag_set[3].value == FlagValue{std::string("safe")});
    CHECK(h.unset == std::vector<std::string>{"/flags/old_flag"});
    CHECK(h.create);
    CHECK_FALSE(h.backup);
    CHECK(h.set.empty());

    const LoadResult t = parseConfig(withHook("type = \"toml_file\"\npath = \"/etc/app/flags.toml\"\n"
                                              "set = { \"/phase_4/enabled\" = false, \"/ratio\" = nan }\n"),
                                     kPath);
    REQUIRE(t.ok());
    CHECK(t.config->hooks[0].type == HookType::TomlFile);
    CHECK(t.config->hooks[0].path == "/etc/app/flags.toml");
    CHECK(t.config->hooks[0].flag_set.size() == 2);
    CHECK(t.config->hooks[0].create == false);
    CHECK(t.config->hooks[0].backup == true);
}

TEST_CASE("follow_symlinks: a boolean of the file hooks, false by default", "[hooks][config][flag_file][file_security]") {
    for (const std::string type : {"env_file", "json_file", "toml_file"}) {
        const std::string set = type == "env_file" ? "set = { A = \"0\" }\n" : "set = { \"/a\" = 0 }\n";
        const LoadResult on =
            parseConfig(withHook("type = \"" + type + "\"\npath = \"/etc/app/f\"\n" + set + "follow_symlinks = true\n"),
                        kPath);
        INFO(type);
        REQUIRE(on.ok());
        CHECK(on.config->hooks[0].follow_symlinks);
        const LoadResult off = parseConfig(withHook("type = \"" + type + "\"\npath = \"/etc/app/f\"\n" + set), kPath);
        REQUIRE(off.ok());
        CHECK_FALSE(off.config->hooks[0].follow_symlinks);
    }
    CHECK(errorsOf(withHook("type = \"json_file\"\npath = \"f.json\"\nset = { \"/a\" = 1 }\nfollow_symlinks = \"yes\"\n"))
              .size() == 1);
    CHECK(errorsOf(withHook("type = \"webhook\"\nurl = \"http://x\"\nfollow_symlinks = true\n")) ==
          Strings{line(2) + ":1: 'follow_symlinks' is not valid for a hook of type 'webhook' (it belongs to env_file, "
                            "json_file and toml_file hooks)"});
}

TEST_CASE("json_file and toml_file config errors point at the line and column", "[hooks][config][flag_file]") {
    SECTION("a pointer that does not start with '/'") {
        CHECK(errorsOf(withHook("type = \"json_file\"\npath = \"f.json\"\nset = { \"flags/x\" = false }\n")) ==
              Strings{line(2) + ":9: \"flags/x\" in 'set' is not a JSON Pointer: a JSON Pointer starts with '/', e.g. "
                                "\"/flags/x\""});
        CHECK(errorsOf(withHook("type = \"toml_file\"\npath = \"f.toml\"\nunset = [\"x\", \"/a~2\"]\n")) ==
              Strings{line(2) + ":10: \"x\" in 'unset' is not a JSON Pointer: a JSON Pointer starts with '/', e.g. \"/x\"",
                      line(2) + ":15: \"/a~2\" in 'unset' is not a JSON Pointer: '~' must be followed by 0 (for '~') or "
                                "1 (for '/')"});
    }
    SECTION("an unsupported value type") {
        CHECK(errorsOf(withHook("type = \"json_file\"\npath = \"f.json\"\nset = { \"/a\" = [1] }\n")) ==
              Strings{line(2) + ":16: the value of \"/a\" must be a boolean, integer, float or string, got array"});
        CHECK(errorsOf(withHook("type = \"toml_file\"\npath = \"f.toml\"\nset = { \"/a\" = 2024-01-01 }\n")) ==
              Strings{line(2) + ":16: the value of \"/a\" must be a boolean, integer, float or string, got date"});
        CHECK(errorsOf(withHook("type = \"json_file\"\npath = \"f.json\"\nset = { \"/a\" = inf }\n")) ==
              Strings{line(2) + ":16: the value of \"/a\" must be finite: JSON has no NaN or infinity"});
        CHECK(errorsOf(withHook("type = \"json_file\"\npath = \"f.json\"\nset = [\"/a\"]\n")) ==
              Strings{line(2) + ":7: 'set' must be a table of JSON Pointers to values, e.g. { \"/flags/new_checkout\" "
                                "= false }, got array"});
    }
    SECTION("a missing path") {
        CHECK(errorsOf(withHook("type = \"json_file\"\nset = { \"/a\" = false }\n")) ==
              Strings{"11:1: missing required key 'path' in [[hook]] of type json_file"});
        CHECK(errorsOf(withHook("type = \"toml_file\"\nset = { \"/a\" = false }\n")) ==
              Strings{"11:1: missing required key 'path' in [[hook]] of type toml_file"});
    }
    SECTION("nothing to do, or a pointer both set and unset") {
        CHECK(errorsOf(withHook("type = \"json_file\"\npath = \"f.json\"\n")) ==
              Strings{"11:1: a json_file hook needs at least one pointer in 'set', 'unset' or 'append', e.g. set = { "
                      "\"/flags/new_checkout\" = false }"});
        CHECK(errorsOf(withHook("type = \"toml_file\"\npath = \"f.toml\"\n")) ==
              Strings{"11:1: a toml_file hook needs at least one pointer in 'set' or 'unset', e.g. set = { "
                      "\"/flags/new_checkout\" = false }"});
        CHECK(errorsOf(withHook("type = \"json_file\"\npath = \"f.json\"\nset = { \"/a\" = 1 }\nunset = [\"/a\"]\n")) ==
              Strings{line(3) + ":10: \"/a\" is both in 'set' and in 'unset'"});
    }
    SECTION("keys of other hook types and typos") {
        CHECK(errorsOf(withHook("type = \"json_file\"\npath = \"f.json\"\nset = { \"/a\" = 1 }\ncommand = [\"x\"]\n")) ==
              Strings{line(3) + ":1: 'command' is not valid for a hook of type 'json_file' (it belongs to script hooks)"});
        CHECK(errorsOf(withHook("type = \"toml_file\"\npath = \"f.toml\"\nset = { \"/a\" = 1 }\nbakup = true\n")) ==
              Strings{line(3) + ":1: unknown key 'bakup' in [[hook]] (did you mean 'backup'?)"});
    }
}

TEST_CASE("json_file append: pointers to elements, in the order written", "[hooks][config][flag_file]") {
    const LoadResult r = parseConfig(
        withHook("type = \"json_file\"\n"
                 "path = \"config/deployment_state.json\"\n"
                 "set = { \"/current_percentage\" = 0 }\n"
                 "append = { \"/history\" = { event = \"rollback\", rule = \"{{rule}}\", percentage = 0, manual = false, "
                 "ratio = 0.5 }, \"/log\" = \"{{incident_id}}\", \"/a/0/b\" = 7 }\n"),
        kPath);
    REQUIRE(r.ok());
    const HookConfig& h = r.config->hooks.at(0);
    REQUIRE(h.flag_append.size() == 3);
    CHECK(h.flag_append[0].pointer == "/history");
    CHECK(h.flag_append[0].is_object);
    using Field = std::pair<std::string, FlagValue>;
    CHECK(h.flag_append[0].fields ==
          std::vector<Field>{{"event", FlagValue{std::string("rollback")}}, {"rule", FlagValue{std::string("{{rule}}")}},
                             {"percentage", FlagValue{std::int64_t{0}}}, {"manual", FlagValue{false}},
                             {"ratio", FlagValue{0.5}}});
    CHECK(h.flag_append[1].pointer == "/log");
    CHECK_FALSE(h.flag_append[1].is_object);
    CHECK(h.flag_append[1].value == FlagValue{std::string("{{incident_id}}")});
    CHECK(h.flag_append[2].pointer == "/a/0/b");
    CHECK(h.flag_append[2].value == FlagValue{std::int64_t{7}});

    // append alone is enough.
    CHECK(errorsOf(withHook("type = \"json_file\"\npath = \"f.json\"\nappend = { \"/h\" = { at = \"{{fired_at}}\" } }\n"))
              .empty());
}

TEST_CASE("json_file append config errors point at the line and column", "[hooks][config][flag_file]") {
    const std::string head = "type = \"json_file\"\npath = \"f.json\"\n";
    SECTION("pointer syntax, and /- at the end") {
        CHECK(errorsOf(withHook(head + "append = { \"history\" = 1 }\n")) ==
              Strings{line(2) + ":12: \"history\" in 'append' is not a JSON Pointer: a JSON Pointer starts with '/', "
                                "e.g. \"/history\""});
        CHECK(errorsOf(withHook(head + "append = { \"/history/-\" = 1 }\n")) ==
              Strings{line(2) + ":12: \"/history/-\" in 'append' names the array itself, without \"/-\": write "
                                "\"/history\""});
    }
    SECTION("value types: a plain value or an inline table of plain values") {
        CHECK(errorsOf(withHook(head + "append = { \"/h\" = [1, 2] }\n")) ==
              Strings{line(2) + ":19: the element of \"/h\" in 'append' (a plain value or an inline table of plain "
                                "values) must be a boolean, integer, float or string, got array"});
        CHECK(errorsOf(withHook(head + "append = { \"/h\" = { event = \"rollback\", at = { t = 1 } } }\n")) ==
              Strings{line(2) + ":46: the field 'at' of \"/h\" in 'append' must be a boolean, integer, float or string, "
                                "got table"});
        CHECK(errorsOf(withHook(head + "append = { \"/h\" = { v = nan } }\n")) ==
              Strings{line(2) + ":25: the field 'v' of \"/h\" in 'append' must be finite: JSON has no NaN or infinity"});
        CHECK(errorsOf(withHook(head + "append = [\"/h\"]\n")) ==
              Strings{line(2) + ":10: 'append' must be a table of JSON Pointers to elements, e.g. { \"/history\" = { "
                                "event = \"rollback\", at = \"{{fired_at}}\" } }, got array"});
    }
    SECTION("the same pointer in set or unset and in append") {
        CHECK(errorsOf(withHook(head + "set = { \"/h\" = 1 }\nappend = { \"/h\" = 2 }\n")) ==
              Strings{line(3) + ":12: \"/h\" is both in 'set' and in 'append'"});
        CHECK(errorsOf(withHook(head + "unset = [\"/h\"]\nappend = { \"/h\" = 2 }\n")) ==
              Strings{line(3) + ":12: \"/h\" is both in 'unset' and in 'append'"});
    }
    SECTION("append belongs to json_file only, and typos get a suggestion") {
        CHECK(errorsOf(withHook("type = \"toml_file\"\npath = \"f.toml\"\nset = { \"/a\" = 1 }\nappend = { \"/h\" = 1 }\n")) ==
              Strings{line(3) + ":1: 'append' is not valid for a hook of type 'toml_file' (it belongs to json_file hooks)"});
        CHECK(errorsOf(withHook(head + "apend = { \"/h\" = 1 }\n")) ==
              Strings{"11:1: a json_file hook needs at least one pointer in 'set', 'unset' or 'append', e.g. set = { "
                      "\"/flags/new_checkout\" = false }",
                      line(2) + ":1: unknown key 'apend' in [[hook]] (did you mean 'append'?)"});
    }
}

TEST_CASE("script hook keys: workdir, inherit_env, user, group, retries", "[hooks][config]") {
    const LoadResult r = parseConfig(withHook("type = \"script\"\n"
                                              "command = [\"bin/undo.sh\"]\n"
                                              "workdir = \"work\"\n"
                                              "inherit_env = [\"KUBECONFIG\", \"http_proxy\"]\n"
                                              "user = \"deploy\"\n"
                                              "group = \"deployers\"\n"
                                              "retries = 2\n"
                                              "retry_backoff = \"3s\"\n"),
                                     kPath);
    REQUIRE(r.ok());
    const HookConfig& h = r.config->hooks.at(0);
    CHECK(h.type == HookType::Script);
    CHECK(h.command == Strings{"/etc/rollguard/bin/undo.sh"});
    CHECK(h.workdir == "/etc/rollguard/work");
    CHECK(h.inherit_env == Strings{"KUBECONFIG", "http_proxy"});
    CHECK(h.user == "deploy");
    CHECK(h.group == "deployers");
    CHECK(h.retries == 2);
    CHECK(h.retry_backoff == 3s);

    // Defaults: the agent's directory and user, no extra names, and no retries (a script
    // is not idempotent in general), unlike webhooks.
    const LoadResult d = parseConfig(withHook("type = \"script\"\ncommand = [\"undo\"]\n"), kPath);
    REQUIRE(d.ok());
    const HookConfig& dh = d.config->hooks.at(0);
    CHECK(dh.workdir.empty());
    CHECK(dh.inherit_env.empty());
    CHECK(dh.user.empty());
    CHECK(dh.group.empty());
    CHECK(dh.retries == 0);
    CHECK(dh.retry_backoff == 500ms);

    const LoadResult abs = parseConfig(withHook("type = \"script\"\ncommand = [\"undo\"]\nworkdir = \"/srv/app\"\n"), kPath);
    REQUIRE(abs.ok());
    CHECK(abs.config->hooks.at(0).workdir == "/srv/app");
}

TEST_CASE("script hook config errors point at the line and column", "[hooks][config]") {
    const std::string script = "type = \"script\"\ncommand = [\"undo\"]\n";
    SECTION("a bad inherit_env name") {
        CHECK(errorsOf(withHook(script + "inherit_env = [\"OK\", \"NOT-OK\"]\n")) ==
              Strings{line(2) + ":22: 'NOT-OK' in 'inherit_env' is not a valid environment variable name"});
    }
    SECTION("inherit_env not an array") {
        CHECK(errorsOf(withHook(script + "inherit_env = \"KUBECONFIG\"\n")) ==
              Strings{line(2) + ":15: 'inherit_env' must be an array of strings, got string"});
    }
    SECTION("an empty workdir") {
        CHECK(errorsOf(withHook(script + "workdir = \"\"\n")) ==
              Strings{line(2) + ":11: 'workdir' must not be empty (leave it out for the agent's working directory)"});
    }
    SECTION("user and group are names") {
        CHECK(errorsOf(withHook(script + "user = 1000\n")) ==
              Strings{line(2) + ":8: 'user' must be a string, got integer"});
        CHECK(errorsOf(withHook(script + "group = \"\"\n")) ==
              Strings{line(2) + ":9: 'group' must not be empty (leave it out to keep the agent's)"});
    }
    SECTION("retries out of range") {
        CHECK(errorsOf(withHook(script + "retries = 50\n")) ==
              Strings{line(2) + ":11: 'retries' must be between 0 and 20, got 50"});
    }
    SECTION("script keys in another hook type") {
        CHECK(errorsOf(withHook("type = \"webhook\"\nurl = \"http://x\"\nworkdir = \"/tmp\"\n")) ==
              Strings{line(2) + ":1: 'workdir' is not valid for a hook of type 'webhook' (it belongs to script "
                                "hooks)"});
    }
}
