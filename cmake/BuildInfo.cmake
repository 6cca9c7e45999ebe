# Bakes the git commit and dependency versions into build_info.cpp. The commit is re-read at build
# time (a custom target), so a new commit changes one tiny file, not the whole build.
set(SPARSETRAIN_BUILD_INFO_CPP ${CMAKE_BINARY_DIR}/generated/build_info.cpp)
add_custom_target(sparsetrain_build_info_gen
  COMMAND ${CMAKE_COMMAND}
          -DSOURCE_DIR=${CMAKE_SOURCE_DIR}
          -DOUTPUT=${SPARSETRAIN_BUILD_INFO_CPP}
          -DTEMPLATE=${CMAKE_SOURCE_DIR}/cmake/build_info.cpp.in
          -DPROJECT_VERSION=${PROJECT_VERSION}
          -DTORCH_VERSION=${Torch_VERSION}
          -DLIBURING_VERSION=${LIBURING_VERSION}
          -DCOMPILER=${CMAKE_CXX_COMPILER_ID}-${CMAKE_CXX_COMPILER_VERSION}
          -DBUILD_TYPE=${CMAKE_BUILD_TYPE}
          -DSANITIZE=${SPARSETRAIN_SANITIZE}
          -P ${CMAKE_SOURCE_DIR}/cmake/WriteBuildInfo.cmake
  BYPRODUCTS ${SPARSETRAIN_BUILD_INFO_CPP}
  COMMENT "" VERBATIM)
