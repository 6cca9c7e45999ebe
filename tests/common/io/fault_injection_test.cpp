// Injected faults (common/io/fault_injection.h): the OP:N:KIND syntax, and the engine failing
// exactly the N-th request or sync, once, the way a real failure reads; a short write leaves half
// its pages on disk. Both backends (io_tests_fallback reruns this on the pread/pwrite pool).
#include "common/io/fault_injection.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/io/aligned_buffer.h"
#include "common/io/io_engine.h"
#include "common/io/io_test_util.h"

namespace io = sparsetrain::common::io;
using sparsetrain::test::fill_pattern;
using sparsetrain::test::TempDir;

TEST_CASE("fault specs parse as OP:N:KIND and bad ones name the syntax") {
  const io::IoFault f = io::parse_io_fault("write:12:eio");
  CHECK(f.op == io::FaultOp::kWrite);
  CHECK(f.index == 12);
  CHECK(f.kind == io::FaultKind::kEio);
  CHECK(io::io_fault_name(f) == "write:12:eio");
  CHECK(io::io_fault_name(io::parse_io_fault("sync:1:nosync")) == "sync:1:nosync");
  CHECK(io::io_fault_name(io::parse_io_fault("read:3:short")) == "read:3:short");
  for (const char* bad : {"", "write", "write:0:eio", "write:x:eio", "write:1:nosync",
                          "sync:1:short", "erase:1:eio", "write:1:eio:extra", "write:-1:eio"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(io::parse_io_fault(bad), doctest::Contains("OP:N:KIND"),
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

  io::set_io_fault(io::parse_io_fault("write:2:enospc"));
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
  CHECK(io::io_op_counts().writes == 3);

  io::set_io_fault(io::parse_io_fault("write:1:short"));
  CHECK_THROWS_WITH_AS(engine->run({{io::IoOp::kWrite, f, 0, out.data(), kBytes}}),
                       doctest::Contains("8192 of 16384 bytes"), io::IoError);
  engine->run({{io::IoOp::kRead, f, 0, in.data(), kBytes}});
  CHECK(std::memcmp(in.data(), out.data(), kBytes / 2) == 0);  // the torn half landed
  CHECK(std::memcmp(in.data() + kBytes / 2, zeros.data(), kBytes / 2) == 0);

  io::set_io_fault(io::parse_io_fault("sync:1:eio"));
  CHECK_THROWS_WITH_AS(engine->sync(f), doctest::Contains("cannot sync"), io::IoError);
  io::set_io_fault(io::parse_io_fault("sync:1:nosync"));
  CHECK_NOTHROW(engine->sync(f));
  io::set_io_fault({});
}
