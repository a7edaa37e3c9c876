// The Debian package: built with cpack from this build tree, unpacked into a throwaway
// root with `dpkg-deb -x`, and the installed binary checks the installed config.

#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

#include "process.h"
#include "temp_dir.h"

using namespace rollguard::testing;

TEST_CASE("cpack builds a .deb whose binary, unit and config work from a throwaway root", "[package][integration]") {
    for (const char* tool : {"/usr/bin/cpack", "/usr/bin/dpkg-deb"}) {
        if (!std::filesystem::exists(tool)) {
            WARN(std::string(tool) + " missing: run scripts/install-deps.sh");
            return;
        }
    }
    TempDir dir;
    const auto out = (dir / "out").string();
    const auto [rc, log] = runCommand({"/usr/bin/cpack", "-G", "DEB", "-B", out, "--config",
                                       std::string(ROLLGUARD_BUILD_DIR) + "/CPackConfig.cmake"},
                                      std::chrono::minutes{3});
    INFO(log);
    REQUIRE(rc == 0);
    std::string deb;
    for (const auto& e : std::filesystem::directory_iterator(out)) {
        if (e.path().extension() == ".deb") {
            deb = e.path().string();
        }
    }
    REQUIRE(!deb.empty());

    // Control data: dependencies computed from the binary, the config a conffile.
    const auto [info_rc, info] = runCommand({"/usr/bin/dpkg-deb", "-I", deb});
    REQUIRE(info_rc == 0);
    CHECK(info.find("Package: rollguard") != std::string::npos);
    CHECK(info.find("libcurl4") != std::string::npos);
    const auto [conf_rc, conffiles] = runCommand({"/usr/bin/dpkg-deb", "-I", deb, "conffiles"});
    CHECK(conf_rc == 0);
    CHECK(conffiles.find("/etc/rollguard/rollguard.toml") != std::string::npos);

    const auto root = dir / "root";
    const auto [x_rc, x_log] = runCommand({"/usr/bin/dpkg-deb", "-x", deb, root.string()});
    INFO(x_log);
    REQUIRE(x_rc == 0);
    const std::string prefix = ROLLGUARD_INSTALL_PREFIX;
    const auto bin = root.string() + prefix + "/bin/rollguard";
    const auto config = root / "etc" / "rollguard" / "rollguard.toml";
    const auto unit = root.string() + prefix + "/lib/systemd/system/rollguard.service";
    REQUIRE(std::filesystem::exists(bin));
    REQUIRE(std::filesystem::exists(config));
    REQUIRE(std::filesystem::exists(unit));
    CHECK(std::filesystem::is_directory(root / "var" / "lib" / "rollguard"));

    // The installed binary accepts the installed config.
    const auto [check_rc, check_out] = runCommand({bin, "check", "--config", config.string()});
    INFO(check_out);
    CHECK(check_rc == 0);
    CHECK(check_out.find("OK") != std::string::npos);
    // The unit runs the binary the package installs, on the config it installs.
    const std::string unit_text = readFile(unit);
    CHECK(unit_text.find(prefix + "/bin/rollguard run") != std::string::npos);
    CHECK(unit_text.find("/etc/rollguard/rollguard.toml") != std::string::npos);
}
