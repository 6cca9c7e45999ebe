#include "common/log.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/atomic_file.h"
#include "common/error.h"

using namespace sparsetrain::common;

TEST_CASE("log levels parse, order and filter") {
  CHECK(parse_log_level("debug") == LogLevel::kDebug);
  CHECK_THROWS_AS(parse_log_level("loud"), UsageError);
  set_log_level(LogLevel::kWarn);
  CHECK_FALSE(log_enabled(LogLevel::kInfo));
  CHECK(log_enabled(LogLevel::kError));
  set_log_level(LogLevel::kOff);
  CHECK_FALSE(log_enabled(LogLevel::kError));
  set_log_level(LogLevel::kInfo);
}

TEST_CASE("the event stream receives log lines as typed JSON") {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("st-events-" + std::to_string(::getpid())))
          .string();
  open_event_stream(path);
  set_log_level(LogLevel::kInfo);
  log_info(cat("read ", 42, " edges"));
  log_debug("not shown");
  open_event_stream("");
  std::istringstream lines(read_file(path));
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    auto event = nlohmann::json::parse(line);
    CHECK(event["type"] == "log");
    CHECK(event["level"] == "info");
    CHECK(event["msg"] == "read 42 edges");
    ++count;
  }
  CHECK(count == 1);
  std::filesystem::remove(path);
}
