#include "common/error.h"

#include <doctest/doctest.h>

#include <cerrno>

using namespace sparsetrain::common;

TEST_CASE("path errors name the path and the cause, and map to exit codes") {
  try {
    throw_path_error("cannot open", "/no/such/file", ENOENT, "pass an existing file");
    FAIL("did not throw");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "cannot open '/no/such/file': No such file or directory");
    CHECK(e.hint() == "pass an existing file");
    CHECK(e.code() == ExitCode::kUsage);
  }
  CHECK_THROWS_AS(throw_path_error("cannot write", "/x", ENOSPC), RunError);
}

TEST_CASE("a failed internal check is an internal error with file and line") {
  try {
    ST_ASSERT(1 + 1 == 3, "arithmetic");
    FAIL("did not throw");
  } catch (const InternalError& e) {
    CHECK(e.code() == ExitCode::kInternal);
    CHECK(std::string(e.what()).find("error_test.cpp") != std::string::npos);
    CHECK(std::string(e.what()).find("arithmetic") != std::string::npos);
  }
}

TEST_CASE("an interrupt request is seen by check_interrupt") {
  CHECK_NOTHROW(check_interrupt());
  request_interrupt();
  CHECK(interrupt_requested());
  CHECK_THROWS_AS(check_interrupt(), InterruptedError);
}
