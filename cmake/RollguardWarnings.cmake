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
