// Injected faults (common/fault_injection.h): the OP:N:KIND syntax, and the engine failing
// exactly the N-th request or sync, once, the way a real failure reads; a short write leaves half
// its pages on disk. Both backends (io_tests_fallback reruns this on the pread/pwrite pool).
#include "common/fault_injection.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/io/aligned_buffer.h"
#include "common/io/io_engine.h"
#include "common/io/io_test_util.h"

namespace common = sparsetrain::common;
namespace io = sparsetrain::common::io;
using sparsetrain::test::fill_pattern;
using sparsetrain::test::TempDir;

TEST_CASE("fault specs parse as OP:N:KIND and bad ones name the syntax") {
  const common::IoFault f = common::parse_io_fault("write:12:eio");
  CHECK(f.op == common::FaultOp::kWrite);
  CHECK(f.index == 12);
  CHECK(f.kind == common::FaultKind::kEio);
  CHECK(common::io_fault_name(f) == "write:12:eio");
  CHECK(common::io_fault_name(common::parse_io_fault("sync:1:nosync")) == "sync:1:nosync");
  CHECK(common::io_fault_name(common::parse_io_fault("read:3:short")) == "read:3:short");
  // the output files' operations (atomic_file.h, the gzip writer)
  for (const char* good : {"file-write:3:short", "file-write:1:enospc", "file-sync:2:nosync",
                           "file-sync:1:eio", "rename:4:eio", "rename:1:enospc"}) {
    CHECK(common::io_fault_name(common::parse_io_fault(good)) == good);
  }
  CHECK(common::parse_io_fault("rename:4:eio").op == common::FaultOp::kRename);
  for (const char* bad :
       {"", "write", "write:0:eio", "write:x:eio", "write:1:nosync", "sync:1:short", "erase:1:eio",
        "write:1:eio:extra", "write:-1:eio", "rename:1:short", "rename:1:nosync",
        "file-sync:1:short", "file-write:1:nosync", "file_write:1:eio"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(common::parse_io_fault(bad), doctest::Contains("OP:N:KIND"),
                         sparsetrain::common::UsageError);
  }
}

TEST_CASE("the n-th write fails once with the errno and the file; a short one leaves half") {
  TempDir dir;
  auto engine = io::IoEngine::create({}, {dir.path()});
  const std::string path = dir.path() + "/data";
  const io::FileId f = engine->open_file(path, io::OpenMode::kCreate);
  constexpr std::size_t kBytes = 4 * 4096;
  io::AlignedBuffer zeros(kBytes), out(kBytes), in(kBytes);
  std::memset(zeros.data(), 0, kBytes);
  fill_pattern(out.data(), kBytes, 7);
  engine->run({{io::IoOp::kWrite, f, 0, zeros.data(), kBytes}});

  common::set_io_fault(common::parse_io_fault("write:2:enospc"));
  engine->run({{io::IoOp::kWrite, f, 0, zeros.data(), kBytes}});  // the first: fine
  try {
    engine->run({{io::IoOp::kWrite, f, 0, out.data(), kBytes}});
    FAIL("the second write did not fail");
  } catch (const io::IoError& e) {
    CHECK(e.err() == ENOSPC);
    CHECK(e.path() == path);
    const std::string message = e.what();
    CHECK(message.find("cannot write '" + path + "'") != std::string::npos);
    CHECK(message.find(std::strerror(ENOSPC)) != std::string::npos);
    CHECK(message.find("injected fault") != std::string::npos);
  }
  engine->run({{io::IoOp::kWrite, f, 0, zeros.data(), kBytes}});  // once only
  CHECK(common::io_op_counts().writes == 3);

  common::set_io_fault(common::parse_io_fault("write:1:short"));
  CHECK_THROWS_WITH_AS(engine->run({{io::IoOp::kWrite, f, 0, out.data(), kBytes}}),
                       doctest::Contains("8192 of 16384 bytes"), io::IoError);
  engine->run({{io::IoOp::kRead, f, 0, in.data(), kBytes}});
  CHECK(std::memcmp(in.data(), out.data(), kBytes / 2) == 0);  // the torn half landed
  CHECK(std::memcmp(in.data() + kBytes / 2, zeros.data(), kBytes / 2) == 0);

  common::set_io_fault(common::parse_io_fault("sync:1:eio"));
  CHECK_THROWS_WITH_AS(engine->sync(f), doctest::Contains("cannot sync"), io::IoError);
  common::set_io_fault(common::parse_io_fault("sync:1:nosync"));
  CHECK_NOTHROW(engine->sync(f));
  common::set_io_fault({});
}
