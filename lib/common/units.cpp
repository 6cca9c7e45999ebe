#include "common/units.h"

#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>

#include "common/error.h"

namespace sparsetrain::common {

namespace {

struct Suffix {
  const char* name;
  double scale;
};

// Splits "1.5GiB" into 1.5 and "GiB"; whitespace between them is allowed.
std::pair<double, std::string> split_number(std::string_view text, const char* kind,
                                            const char* example) {
  std::string s(text);
  const std::string hint = std::string("write a ") + kind + " like '" + example + "'";
  if (s.empty()) throw UsageError(std::string("empty ") + kind, hint);
  const char* begin = s.c_str();
  char* end = nullptr;
  double value = std::strtod(begin, &end);
  if (end == begin || !std::isfinite(value)) {
    throw UsageError(std::string("invalid ") + kind + " '" + s + "'", hint);
  }
  if (value < 0) throw UsageError(std::string("negative ") + kind + " '" + s + "'", hint);
  std::string suffix(end);
  while (!suffix.empty() && std::isspace(static_cast<unsigned char>(suffix.front()))) {
    suffix.erase(suffix.begin());
  }
  return {value, suffix};
}

}  // namespace

std::uint64_t parse_bytes(std::string_view text) {
  // A table, one unit family per line.
  // clang-format off
  static constexpr std::array<Suffix, 14> kSuffixes{{
      {"", 1.0}, {"B", 1.0},
      {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0},
      {"K", 1024.0}, {"M", 1048576.0}, {"G", 1073741824.0}, {"T", 1099511627776.0},
      {"kB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
  }};
  // clang-format on
  auto [value, suffix] = split_number(text, "size", "24GiB");
  for (const Suffix& s : kSuffixes) {
    if (suffix == s.name) {
      double bytes = value * s.scale;
      if (bytes >= 18446744073709551615.0) {
        throw UsageError("size '" + std::string(text) + "' is too large",
                         "sizes must be below 16 EiB");
      }
      double rounded = std::floor(bytes + 0.5);
      if (std::fabs(rounded - bytes) > std::max(1e-6, bytes * 1e-12)) {  // float noise only
        throw UsageError("size '" + std::string(text) + "' is not a whole number of bytes",
                         "use a smaller unit, e.g. '1536MiB' instead of '1.5000001GiB'");
      }
      return static_cast<std::uint64_t>(rounded);
    }
  }
  throw UsageError("unknown size unit '" + suffix + "' in '" + std::string(text) + "'",
                   "use B, KiB, MiB, GiB, TiB (powers of 1024) or kB, MB, GB, TB (powers of 1000)");
}

double parse_duration(std::string_view text) {
  static constexpr std::array<Suffix, 7> kSuffixes{{
      {"", 1.0},
      {"s", 1.0},
      {"ms", 1e-3},
      {"us", 1e-6},
      {"ns", 1e-9},
      {"min", 60.0},
      {"h", 3600.0},
  }};
  auto [value, suffix] = split_number(text, "duration", "500ms");
  for (const Suffix& s : kSuffixes) {
    if (suffix == s.name) return value * s.scale;
  }
  throw UsageError("unknown duration unit '" + suffix + "' in '" + std::string(text) + "'",
                   "use ns, us, ms, s, min or h");
}

std::string format_bytes(double bytes) {
  static constexpr std::array<const char*, 7> kUnits{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  std::size_t unit = 0;
  while (bytes >= 1024.0 && unit + 1 < kUnits.size()) {
    bytes /= 1024.0;
    ++unit;
  }
  char buf[32];
  if (unit == 0) {
    std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  } else {
    std::snprintf(buf, sizeof buf,
                  bytes < 10    ? "%.2f %s"
                  : bytes < 100 ? "%.1f %s"
                                : "%.0f %s",
                  bytes, kUnits[unit]);
  }
  return buf;
}

std::string format_duration(double seconds) {
  char buf[48];
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds < 1.0) {
    std::snprintf(buf, sizeof buf, "%.0f ms", seconds * 1e3);
  } else if (seconds < 60.0) {
    std::snprintf(buf, sizeof buf, "%.1f s", seconds);
  } else if (seconds < 3600.0) {
    auto total = static_cast<long>(seconds + 0.5);
    std::snprintf(buf, sizeof buf, "%ld min %02ld s", total / 60, total % 60);
  } else {
    auto total = static_cast<long>(seconds / 60 + 0.5);
    std::snprintf(buf, sizeof buf, "%ld h %02ld min", total / 60, total % 60);
  }
  return buf;
}

}  // namespace sparsetrain::common
