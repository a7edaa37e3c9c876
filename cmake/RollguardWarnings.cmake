# rollguard_enable_warnings(target): the project's warning set, errors under ROLLGUARD_WERROR,
# sanitizers under ROLLGUARD_SANITIZE.
function(rollguard_enable_warnings tgt)
  target_compile_options(${tgt} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                        -Wold-style-cast -Wcast-align -Woverloaded-virtual
                                        -Wformat=2 -Wimplicit-fallthrough)
  if(ROLLGUARD_WERROR)
    target_compile_options(${tgt} PRIVATE -Werror)
  endif()
endfunction()

if(ROLLGUARD_SANITIZE)
  string(REPLACE ";" "," _rg_sanitizers "${ROLLGUARD_SANITIZE}")
  message(STATUS "rollguard: building with -fsanitize=${_rg_sanitizers}")
  add_compile_options(-fsanitize=${_rg_sanitizers} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_rg_sanitizers})
endif()

# rollguard_hot_sources(file...): computational kernels, and the property tests that run
# them millions of times, are compiled at -O1 in Debug builds (the sanitizer trees of
# scripts/test.sh; everything else there is -O0, which clang compiles three times as fast).
# Under ASan at -O0 those tests took minutes; at -O1 seconds. Files with their own options
# are left out of unity batches by CMake, which suits kernels that deserve their own unit;
# and out of the test binaries' precompiled header, which is built at -O0 (clang refuses a
# PCH built with other optimisation settings).
function(rollguard_hot_sources)
  set_source_files_properties(${ARGN} PROPERTIES COMPILE_OPTIONS "$<$<CONFIG:Debug>:-O1>" SKIP_PRECOMPILE_HEADERS ON)
endfunction()
