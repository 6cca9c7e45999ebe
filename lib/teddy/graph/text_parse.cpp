// Number parsing for graph text files; see text_parse.h.
#include "teddy/graph/text_parse.h"

#include <charconv>
#include <cmath>

namespace sparsetrain::teddy {

void LineCursor::skip_blanks() {
  while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\r')) ++p_;
}

bool LineCursor::read_u64(std::uint64_t& value, std::uint64_t max) {
  skip_blanks();
  const char* start = p_;
  std::uint64_t v = 0;
  while (p_ < end_ && static_cast<unsigned char>(*p_ - '0') < 10) {
    const std::uint64_t digit = static_cast<std::uint64_t>(*p_ - '0');
    if (v > (max - digit) / 10) return false;  // would exceed max
    v = v * 10 + digit;
    ++p_;
  }
  if (p_ == start) return false;
  value = v;
  return true;
}

bool LineCursor::read_i64(std::int64_t& value) {
  skip_blanks();
  bool negative = false;
  if (p_ < end_ && (*p_ == '-' || *p_ == '+')) negative = *p_++ == '-';
  std::uint64_t magnitude = 0;
  if (p_ < end_ && *p_ == ' ') return false;
  if (!read_u64(magnitude, negative ? std::uint64_t{1} << 63 : INT64_MAX)) return false;
  value =
      negative ? static_cast<std::int64_t>(0 - magnitude) : static_cast<std::int64_t>(magnitude);
  return true;
}

bool LineCursor::read_f32(float& value) {
  skip_blanks();
  const char* start = p_;
  if (p_ < end_ && *p_ == '+') ++start, ++p_;
  // Fast path: plain "0" / "1" fields (bag-of-words features).
  if (p_ + 1 <= end_ && (*p_ == '0' || *p_ == '1') &&
      (p_ + 1 == end_ || p_[1] == ',' || p_[1] == ' ' || p_[1] == '\t' || p_[1] == '\r')) {
    value = *p_ == '1' ? 1.0f : 0.0f;
    ++p_;
    return true;
  }
  float v = 0;
  const auto result = std::from_chars(start, end_, v, std::chars_format::general);
  if (result.ec != std::errc() || result.ptr == start || !std::isfinite(v)) return false;
  p_ = result.ptr;
  value = v;
  return true;
}

bool LineCursor::skip_separator() {
  const char* before = p_;
  skip_blanks();
  if (p_ >= end_) return false;
  if (*p_ == ',') {
    ++p_;
    return true;
  }
  return whitespace_ && p_ > before;  // edge lists: a run of blanks separates fields
}

bool LineCursor::at_end() {
  skip_blanks();
  return p_ >= end_;
}

std::size_t LineCursor::count_fields() const {
  std::size_t fields = 0;
  bool in_field = false;
  for (const char* q = p_; q < end_; ++q) {
    const bool sep = *q == ',' || *q == ' ' || *q == '\t' || *q == '\r';
    if (!sep && !in_field) ++fields;
    in_field = !sep;
  }
  return fields;
}

}  // namespace sparsetrain::teddy
