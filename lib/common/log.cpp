#include "common/log.h"

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/timer.h"

namespace sparsetrain::common {

namespace {

std::atomic<LogLevel> g_level{LogLevel::kInfo};
std::mutex g_mutex;                       // guards stderr lines and the event stream
std::unique_ptr<std::ofstream> g_events;  // file stream, when --jsonl FILE
bool g_events_stdout = false;             // --jsonl -

const Timer& process_timer() {
  static const Timer timer;
  return timer;
}

}  // namespace

LogLevel parse_log_level(std::string_view name) {
  for (int i = 0; i <= static_cast<int>(LogLevel::kOff); ++i) {
    auto level = static_cast<LogLevel>(i);
    if (name == log_level_name(level)) return level;
  }
  throw UsageError("unknown log level '" + std::string(name) + "'",
                   "use one of trace, debug, info, warn, error, off");
}

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return "trace";
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kOff:
      return "off";
  }
  return "?";
}

void set_log_level(LogLevel level) { g_level.store(level); }
LogLevel log_level() { return g_level.load(); }
bool log_enabled(LogLevel level) {
  return level != LogLevel::kOff && level >= g_level.load(std::memory_order_relaxed);
}
double log_clock() { return process_timer().seconds(); }

void open_event_stream(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_events.reset();
  g_events_stdout = false;
  if (path.empty()) return;
  if (path == "-") {
    g_events_stdout = true;
    return;
  }
  auto stream = std::make_unique<std::ofstream>(path, std::ios::out | std::ios::trunc);
  if (!*stream)
    throw_path_error("cannot open event stream", path, errno,
                     "pass --jsonl a writable file or '-'");
  g_events = std::move(stream);
}

bool event_stream_open() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_events || g_events_stdout;
}

void emit_event_line(const std::string& json_object) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_events) {
    *g_events << json_object << '\n';
    g_events->flush();
  } else if (g_events_stdout) {
    std::cout << json_object << '\n' << std::flush;
  }
}

void log_message(LogLevel level, std::string_view message) {
  const double t = log_clock();
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    std::fprintf(stderr, "[%8.3f] %-5s %.*s\n", t, log_level_name(level),
                 static_cast<int>(message.size()), message.data());
  }
  if (event_stream_open()) {
    nlohmann::json event{
        {"type", "log"}, {"t", t}, {"level", log_level_name(level)}, {"msg", std::string(message)}};
    emit_event_line(event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
}

}  // namespace sparsetrain::common
