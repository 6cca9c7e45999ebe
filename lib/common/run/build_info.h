// What this binary is: version, commit, and the versions it was built against. The values come
// from cmake/build_info.cpp.in, regenerated when the git commit changes.
#pragma once

namespace sparsetrain::common {

struct BuildInfo {
  const char* version;           // "0.1.0"
  const char* git_commit;        // short hash, "-dirty" when built from uncommitted changes
  const char* torch_version;     // LibTorch found at configure time, "2.11.0"
  const char* liburing_version;  // pkg-config version of liburing, "2.3"
  const char* compiler;          // "GNU-12.2.0"
  const char* build_type;        // "Release"
  const char* sanitize;          // "", "address,undefined", "thread"
};

const BuildInfo& build_info();

}  // namespace sparsetrain::common
