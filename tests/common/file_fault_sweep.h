// The output-file fault sweep shared by the tests of AtomicFile, AtomicDirectory and the writers
// built on them (saved graphs, run records): every injected file fault (common/fault_injection.h)
// at every index a clean write reaches.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "common/error.h"
#include "common/fault_injection.h"

namespace sparsetrain::test {

using common::FaultKind;
using common::FaultOp;

// Every output-file fault there is (fault_injection.h), with its op's count from a clean run.
struct FileFault {
  FaultOp op;
  FaultKind kind;
};
constexpr FileFault kFileFaults[] = {
    {FaultOp::kFileWrite, FaultKind::kEio},   {FaultOp::kFileWrite, FaultKind::kEnospc},
    {FaultOp::kFileWrite, FaultKind::kShort}, {FaultOp::kFileSync, FaultKind::kEio},
    {FaultOp::kFileSync, FaultKind::kNoSync}, {FaultOp::kRename, FaultKind::kEio},
    {FaultOp::kRename, FaultKind::kEnospc}};

// Runs `write` once per (fault, index) over all the operations a clean `write` makes; after
// each, `check(failed)` sees the result (every failure must be an injected one, a RunError).
template <class Write, class Check>
int sweep_file_faults(const Write& write, const Check& check) {
  common::set_io_fault({});
  write();
  const common::IoOpCounts counts = common::io_op_counts();
  int tried = 0;
  for (const FileFault& f : kFileFaults) {
    REQUIRE(counts.of(f.op) > 0);
    for (std::uint64_t n = 1; n <= counts.of(f.op); ++n) {
      const common::IoFault fault{f.op, n, f.kind};
      INFO(common::io_fault_name(fault));
      common::set_io_fault(fault);
      bool failed = false;
      try {
        write();
      } catch (const common::RunError& e) {
        failed = true;
        CHECK(std::string(e.what()).find("(injected fault)") != std::string::npos);
      }
      common::set_io_fault({});
      CHECK(failed == (f.kind != FaultKind::kNoSync));
      check(failed);
      ++tried;
    }
  }
  return tried;
}

}  // namespace sparsetrain::test
