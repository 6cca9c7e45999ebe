// Cheap checks of what the I/O stack allows here, for `sparsetrain env` and for choosing the I/O
// backend: can we set up an io_uring (seccomp and old kernels refuse it), and does a directory's
// filesystem accept O_DIRECT (tmpfs and some overlay setups do not)? Yes/no answers only: the
// bandwidth of the disks is measured by ssd_probe.h.
#pragma once

#include <string>

namespace sparsetrain::common::io {

struct ProbeResult {
  bool ok = false;
  std::string detail;  // why not, as strerror text; or what was found
  int err = 0;         // errno of the failure (EINVAL: the filesystem rejects O_DIRECT)
};

// Sets up and tears down a tiny ring.
ProbeResult probe_io_uring();
// Creates, writes one 4 KiB aligned block to, and removes a temporary file in `dir` with O_DIRECT.
ProbeResult probe_o_direct(const std::string& dir);

}  // namespace sparsetrain::common::io
