// A progress bar for long loops. On a terminal (or --progress always) it redraws one stderr line:
//   score  [#########.........]  48%  4.8M/10.0M edges  12.3M edges/s  ETA 0.4 s
// Otherwise (--progress auto on a pipe) it prints a plain line at most every `interval` seconds, so
// logs stay readable; --progress never prints nothing. Every redraw also goes to the --jsonl
// stream. `advance` is thread-safe and cheap (one atomic add; drawing is rate-limited).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

namespace sparsetrain::common {

enum class ProgressMode { kAuto, kAlways, kNever };

// "auto|always|never" -> ProgressMode; throws UsageError otherwise.
ProgressMode parse_progress_mode(std::string_view name);
void set_progress_mode(ProgressMode mode);
ProgressMode progress_mode();

class Progress {
 public:
  // total: units of work (0 = unknown: no bar, no ETA); unit: "edges", "steps", "B".
  Progress(std::string label, std::uint64_t total, std::string unit, double interval_s = 5.0);
  ~Progress();  // finish() if not done yet
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(std::uint64_t n = 1);
  void set(std::uint64_t done);
  // Free text after the rate, e.g. "loss 2.31"; shown on the next redraw.
  void set_note(std::string note);
  // Final line with the total time and mean rate.
  void finish();

  // Formats the line for `done` units after `elapsed` seconds (exposed for tests).
  std::string render(std::uint64_t done, double elapsed, bool bar) const;

 private:
  void maybe_draw(bool force);

  std::string label_;
  std::string unit_;
  std::uint64_t total_;
  double interval_s_;
  bool tty_;
  bool enabled_;
  std::atomic<std::uint64_t> done_{0};
  std::atomic<bool> finished_{false};
  double start_;
  std::atomic<double> last_draw_;
  std::mutex draw_mutex_;
  std::string note_;
};

}  // namespace sparsetrain::common
