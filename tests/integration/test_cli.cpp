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
