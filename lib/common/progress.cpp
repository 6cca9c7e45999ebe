#include "common/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/log.h"
#include "common/units.h"

namespace sparsetrain::common {

namespace {

std::atomic<ProgressMode> g_mode{ProgressMode::kAuto};

// "12.3M": compact counts for the bar; bytes get binary units instead.
std::string format_count(double n, const std::string& unit) {
  if (unit == "B") return format_bytes(n);
  char buf[32];
  if (n >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2fG", n / 1e9);
  else if (n >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else if (n >= 1e4)
    std::snprintf(buf, sizeof buf, "%.1fk", n / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", n);
  return buf;
}

}  // namespace

ProgressMode parse_progress_mode(std::string_view name) {
  if (name == "auto") return ProgressMode::kAuto;
  if (name == "always") return ProgressMode::kAlways;
  if (name == "never") return ProgressMode::kNever;
  throw UsageError("unknown progress mode '" + std::string(name) + "'",
                   "use auto, always or never");
}
void set_progress_mode(ProgressMode mode) { g_mode.store(mode); }
ProgressMode progress_mode() { return g_mode.load(); }

Progress::Progress(std::string label, std::uint64_t total, std::string unit, double interval_s)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      interval_s_(interval_s),
      start_(log_clock()),
      last_draw_(log_clock()) {
  const ProgressMode mode = progress_mode();
  tty_ = mode == ProgressMode::kAlways || (mode == ProgressMode::kAuto && isatty(STDERR_FILENO));
  enabled_ = mode != ProgressMode::kNever;
  if (tty_) interval_s_ = 0.1;  // redraw often on a terminal, rarely in logs
}

Progress::~Progress() {
  if (!finished_.load()) finish();
}

void Progress::advance(std::uint64_t n) {
  done_.fetch_add(n, std::memory_order_relaxed);
  maybe_draw(false);
}

void Progress::set(std::uint64_t done) {
  done_.store(done, std::memory_order_relaxed);
  maybe_draw(false);
}

void Progress::set_note(std::string note) {
  std::lock_guard<std::mutex> lock(draw_mutex_);
  note_ = std::move(note);
}

std::string Progress::render(std::uint64_t done, double elapsed, bool bar) const {
  std::string line = label_;
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
  if (total_ > 0) {
    const double frac = std::min(1.0, static_cast<double>(done) / static_cast<double>(total_));
    if (bar) {
      constexpr int kWidth = 20;
      const int filled = static_cast<int>(frac * kWidth);
      line += "  [" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "]";
    }
    char pct[16];
    std::snprintf(pct, sizeof pct, "  %3.0f%%", frac * 100);
    line += pct;
    line += "  " + format_count(done, unit_) + "/" + format_count(total_, unit_) + " " +
            (unit_ == "B" ? "" : unit_);
  } else {
    line += "  " + format_count(done, unit_) + " " + (unit_ == "B" ? "" : unit_);
  }
  line += "  " + format_count(rate, unit_) + (unit_ == "B" ? "/s" : " " + unit_ + "/s");
  if (!note_.empty()) line += "  " + note_;
  if (total_ > 0 && rate > 0 && done < total_) {
    line += "  ETA " + format_duration(static_cast<double>(total_ - done) / rate);
  }
  return line;
}

void Progress::maybe_draw(bool force) {
  if (!enabled_ && !event_stream_open()) return;
  const double now = log_clock();
  double last = last_draw_.load(std::memory_order_relaxed);
  if (!force && now - last < interval_s_) return;
  if (!force && !last_draw_.compare_exchange_strong(last, now)) return;  // another thread draws
  last_draw_.store(now);
  std::lock_guard<std::mutex> lock(draw_mutex_);
  const std::uint64_t done = done_.load(std::memory_order_relaxed);
  const double elapsed = now - start_;
  if (enabled_) {
    const std::string line = render(done, elapsed, tty_);
    if (tty_)
      std::fprintf(stderr, "\r\033[2K%s", line.c_str());
    else if (log_enabled(LogLevel::kInfo))
      std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }
  if (event_stream_open()) {
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
    nlohmann::json event{{"type", "progress"}, {"t", now},      {"label", label_}, {"done", done},
                         {"total", total_},    {"unit", unit_}, {"rate", rate}};
    if (total_ > 0 && rate > 0 && done < total_) event["eta_s"] = (total_ - done) / rate;
    if (!note_.empty()) event["note"] = note_;
    emit_event_line(event.dump());
  }
}

void Progress::finish() {
  if (finished_.exchange(true)) return;
  maybe_draw(true);
  if (enabled_ && tty_) std::fputc('\n', stderr);
}

}  // namespace sparsetrain::common
