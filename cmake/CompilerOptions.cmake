# Compiler settings shared by every target: warnings, ccache, sanitizers, and a helper that gives a
# target the precompiled LibTorch header (one torch/torch.h parse costs ~35 s on a 2-core machine).

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  # pch_defines/time_macros: let ccache reuse objects built against a precompiled header.
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
      CCACHE_BASEDIR=${CMAKE_SOURCE_DIR} ${CCACHE_PROGRAM})
  set(CMAKE_C_COMPILER_LAUNCHER ${CMAKE_CXX_COMPILER_LAUNCHER})
endif()

set(SPARSETRAIN_SANITIZE "" CACHE STRING "Sanitizers: '', 'address,undefined' or 'thread'")
if(SPARSETRAIN_SANITIZE)
  add_compile_options(-fsanitize=${SPARSETRAIN_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=${SPARSETRAIN_SANITIZE})
endif()

# Warnings for our own targets only (LibTorch headers are included as SYSTEM).
add_library(sparsetrain_warnings INTERFACE)
target_compile_options(sparsetrain_warnings INTERFACE -Wall -Wextra -Wpedantic -Wno-unused-parameter)

# Gives `target` a precompiled <torch/torch.h>. Every torch-heavy target calls this instead of
# including torch in each source file's own parse.
function(sparsetrain_torch_pch target)
  target_precompile_headers(${target} PRIVATE <torch/torch.h>)
endfunction()
