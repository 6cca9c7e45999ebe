// Leveled logging to stderr (stdout stays clean for data), plus an optional JSON Lines event stream
// (`--jsonl FILE`) that receives every log line and every progress update as typed messages:
//   {"type":"log","t":1.234,"level":"info","msg":"..."}
//   {"type":"progress","t":..., "label":"...","done":..,"total":..,"rate":..,"eta_s":..}
// Thread-safe: lines from several threads never interleave.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace sparsetrain::common {

enum class LogLevel { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

// "trace|debug|info|warn|error|off" -> LogLevel; throws UsageError otherwise.
LogLevel parse_log_level(std::string_view name);
const char* log_level_name(LogLevel level);

void set_log_level(LogLevel level);
LogLevel log_level();
bool log_enabled(LogLevel level);

// Opens `path` ('-' = stdout) as the JSON Lines event stream; throws on failure. Empty closes it.
void open_event_stream(const std::string& path);
// Writes one JSON object (already serialised, no newline) to the event stream if one is open.
void emit_event_line(const std::string& json_object);
bool event_stream_open();
// Seconds since the process started logging (the "t" field of every event).
double log_clock();

void log_message(LogLevel level, std::string_view message);

// Concatenates anything streamable: log_info(cat("read ", n, " edges from '", path, "'")).
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <typename... Args>
void log_debug(const Args&... args) {
  if (log_enabled(LogLevel::kDebug)) log_message(LogLevel::kDebug, cat(args...));
}
template <typename... Args>
void log_info(const Args&... args) {
  if (log_enabled(LogLevel::kInfo)) log_message(LogLevel::kInfo, cat(args...));
}
template <typename... Args>
void log_warn(const Args&... args) {
  if (log_enabled(LogLevel::kWarn)) log_message(LogLevel::kWarn, cat(args...));
}
template <typename... Args>
void log_error(const Args&... args) {
  if (log_enabled(LogLevel::kError)) log_message(LogLevel::kError, cat(args...));
}

}  // namespace sparsetrain::common
