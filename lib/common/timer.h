// Monotonic wall-clock timing: `Timer` for one interval, `PhaseTimes` to accumulate named phases
// ("parse", "score", ...) that a run record reports under run.timings (seconds).
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace sparsetrain::common {

class Timer {
 public:
  Timer() : start_(Clock::now()) {}
  void reset() { start_ = Clock::now(); }
  // Seconds since construction or the last reset().
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point start_;
};

// Accumulated seconds per phase name; std::map keeps the JSON order stable.
class PhaseTimes {
 public:
  void add(const std::string& phase, double seconds) { seconds_[phase] += seconds; }
  const std::map<std::string, double>& all() const { return seconds_; }

  // Adds the scope's duration to `phase` when it ends: `{ auto t = times.scope("parse"); ... }`.
  class Scope {
   public:
    Scope(PhaseTimes& owner, std::string phase) : owner_(owner), phase_(std::move(phase)) {}
    ~Scope() { owner_.add(phase_, timer_.seconds()); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    PhaseTimes& owner_;
    std::string phase_;
    Timer timer_;
  };
  Scope scope(std::string phase) { return Scope(*this, std::move(phase)); }

 private:
  std::map<std::string, double> seconds_;
};

}  // namespace sparsetrain::common
