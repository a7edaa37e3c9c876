// The rollguard command line as users meet it: --help, --version, check, exit codes.

#include <string>

#include <catch2/catch.hpp>

#include "process.h"
#include "temp_dir.h"

using namespace rollguard::testing;

TEST_CASE("rollguard --help and --version exit 0", "[cli][integration]") {
    auto [code, out] = runCommand({ROLLGUARD_BIN, "--help"});
    CHECK(code == 0);
    CHECK(out.find("check") != std::string::npos);
    CHECK(out.find("run") != std::string::npos);

    std::tie(code, out) = runCommand({ROLLGUARD_BIN, "--version"});
    CHECK(code == 0);
    CHECK(out.find("rollguard ") != std::string::npos);

    std::tie(code, out) = runCommand({ROLLGUARD_BIN, "run", "--help"});
    CHECK(code == 0);
    CHECK(out.find("--config") != std::string::npos);
}

TEST_CASE("bad usage exits 2", "[cli][integration]") {
    CHECK(runCommand({ROLLGUARD_BIN}).first == 2);
    CHECK(runCommand({ROLLGUARD_BIN, "frobnicate"}).first == 2);
    CHECK(runCommand({ROLLGUARD_BIN, "check"}).first == 2);
}

TEST_CASE("rollguard check accepts every shipped config", "[cli][integration]") {
    for (const auto& entry : std::filesystem::recursive_directory_iterator(ROLLGUARD_SOURCE_DIR "/config")) {
        if (entry.path().extension() != ".toml") {
            continue;
        }
        INFO(entry.path());
        const auto [code, out] = runCommand({ROLLGUARD_BIN, "check", "--config", entry.path().string()});
        INFO(out);
        CHECK(code == 0);
        CHECK(out.find(": OK (") != std::string::npos);
    }
}

TEST_CASE("rollguard check reports file:line:col and exits 2", "[cli][integration]") {
    TempDir dir;
    const auto path = (dir / "bad.toml").string();
    writeFile(path,
              "[[source]]\n"
              "name = \"app\"\n"
              "type = \"json_log\"\n"
              "paths = [\"/tmp/x.log\"]\n"
              "\n"
              "[[rule]]\n"
              "name = \"r\"\n"
              "source = \"app\"\n"
              "metric = \"error_ratio\"\n"
              "above = 0.05\n"
              "windw = \"5m\"\n"
              "for = \"5 minutes\"\n");
    const auto [code, out] = runCommand({ROLLGUARD_BIN, "check", "--config", path});
    INFO(out);
    CHECK(code == 2);
    CHECK(out.find(path + ":11:1: error: unknown key 'windw'") != std::string::npos);
    CHECK(out.find("did you mean 'window'?") != std::string::npos);
    CHECK(out.find(path + ":12:7: error:") != std::string::npos);

    const auto missing = runCommand({ROLLGUARD_BIN, "check", "--config", (dir / "nope.toml").string()});
    CHECK(missing.first == 2);
    CHECK(missing.second.find("nope.toml") != std::string::npos);

    // `run` refuses a broken config the same way.
    CHECK(runCommand({ROLLGUARD_BIN, "run", "--config", path}).first == 2);
}

TEST_CASE("rollguard test: 0 when every case passes, 1 with a readable diff, 2 when a file does not load",
          "[cli][integration]") {
    TempDir dir;
    const std::string config = (dir / "c.toml").string();
    writeFile(config,
              "[[source]]\nname = \"app\"\ntype = \"json_log\"\npaths = [\"/nonexistent/*.log\"]\n"
              "error = { field = \"status\", gte = 500 }\n"
              "[[rule]]\nname = \"errors\"\nsource = \"app\"\nmetric = \"error_ratio\"\nabove = 0.1\n"
              "window = \"1m\"\nhooks = [\"off\"]\n"
              "[[hook]]\nname = \"off\"\ntype = \"env_file\"\npath = \"/nonexistent/env\"\nset = { A = \"0\" }\n");
    const auto testFile = [&](const std::string& name, const std::string& firing_at_2m) {
        const std::string path = (dir / name).string();
        writeFile(path, "config = \"c.toml\"\n[[test]]\nname = \"half of the requests fail\"\n"
                        "[[test.input]]\nsource = \"app\"\nfrom = \"1m\"\nto = \"3m\"\nrate = 10\nerror_ratio = 0.5\n"
                        "[[test.expect]]\nat = \"2m\"\nfiring = " +
                            firing_at_2m + "\nhooks = [\"off\"]\n");
        return path;
    };
    auto [code, out] = runCommand({ROLLGUARD_BIN, "test", testFile("pass.toml", "[\"errors\"]")});
    INFO(out);
    CHECK(code == 0);
    CHECK(out.find("PASS " + (dir / "pass.toml").string() + ": half of the requests fail\n") != std::string::npos);
    CHECK(out.find("1 passed, 0 failed\n") != std::string::npos);

    std::tie(code, out) = runCommand({ROLLGUARD_BIN, "test", testFile("fail.toml", "[]")});
    INFO(out);
    CHECK(code == 1);
    CHECK(out.find("FAIL " + (dir / "fail.toml").string() + ": half of the requests fail\n") != std::string::npos);
    CHECK(out.find("firing: expected [], got [errors]\n") != std::string::npos);
    CHECK(out.find("errors: firing since 1m1s (error_ratio=50%, above 10%, 600 samples)") != std::string::npos);

    std::tie(code, out) = runCommand({ROLLGUARD_BIN, "test", testFile("typo.toml", "[\"erors\"]")});
    INFO(out);
    CHECK(code == 2);
    CHECK(out.find("typo.toml:12:11: error: unknown rule \"erors\" (did you mean 'errors'?)") != std::string::npos);

    std::tie(code, out) = runCommand({ROLLGUARD_BIN, "test", "--help"});
    CHECK(code == 0);
    CHECK(out.find("[[test.expect]]") != std::string::npos);
}
