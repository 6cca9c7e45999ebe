# Finds every external dependency; none is copied into the tree (third_party/README.md lists them).
#
# LibTorch: scripts/setup.sh passes the PyTorch wheel's prefix (torch.utils.cmake_prefix_path) in
# CMAKE_PREFIX_PATH. A user with their own LibTorch sets SPARSETRAIN_LIBTORCH=/path/to/libtorch
# (environment or -D) instead.

set(SPARSETRAIN_LIBTORCH "$ENV{SPARSETRAIN_LIBTORCH}" CACHE PATH "Root of a LibTorch to use instead of the venv wheel")
# The project venv: scripts/common.sh's VENV (SPARSETRAIN_VENV, default .venv in the checkout).
if(DEFINED ENV{SPARSETRAIN_VENV} AND NOT "$ENV{SPARSETRAIN_VENV}" STREQUAL "")
  set(SPARSETRAIN_VENV_DIR "$ENV{SPARSETRAIN_VENV}")
else()
  set(SPARSETRAIN_VENV_DIR "${CMAKE_SOURCE_DIR}/.venv")
endif()
if(SPARSETRAIN_LIBTORCH)
  list(PREPEND CMAKE_PREFIX_PATH "${SPARSETRAIN_LIBTORCH}")
elseif(EXISTS "${SPARSETRAIN_VENV_DIR}/bin/python")
  # The project venv that scripts/setup.sh makes: ask its torch where the CMake config lives.
  execute_process(
    COMMAND "${SPARSETRAIN_VENV_DIR}/bin/python" -c "import torch; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _venv_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_venv_torch_prefix)
    list(APPEND CMAKE_PREFIX_PATH "${_venv_torch_prefix}")
  endif()
endif()

# LibTorch's CUDA config wants nvcc; point it at the usual place when it is not on PATH.
if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
find_package(Torch REQUIRED)
if(NOT TARGET torch)
  message(FATAL_ERROR "LibTorch was found but defines no 'torch' target.\n"
                      "hint: run scripts/setup.sh, or set SPARSETRAIN_LIBTORCH to a LibTorch root")
endif()
# LibTorch headers are third-party: include them as SYSTEM so our warnings stay about our code.
get_target_property(_torch_inc torch INTERFACE_INCLUDE_DIRECTORIES)
set_target_properties(torch PROPERTIES INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${_torch_inc}")

# CUDA: on when LibTorch was built with it (its config then found the toolkit for us).
if(TARGET torch_cuda OR TARGET CUDA::cudart)
  set(SPARSETRAIN_HAVE_CUDA ON)
  find_package(CUDAToolkit REQUIRED)
else()
  set(SPARSETRAIN_HAVE_CUDA OFF)
endif()
message(STATUS "sparsetrain: torch ${Torch_VERSION}, CUDA code paths: ${SPARSETRAIN_HAVE_CUDA}")

find_package(CLI11 CONFIG REQUIRED)
find_package(nlohmann_json 3.10 CONFIG REQUIRED)
find_package(ZLIB REQUIRED)
find_package(Boost 1.74 REQUIRED)   # header-only parts (Boost.Graph algorithms): Boost::headers
find_package(Threads REQUIRED)
find_package(doctest CONFIG REQUIRED)

find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBURING REQUIRED IMPORTED_TARGET liburing>=2.1)
pkg_check_modules(LIBDEFLATE REQUIRED IMPORTED_TARGET libdeflate)  # whole-buffer gzip inflate, ~3x zlib
