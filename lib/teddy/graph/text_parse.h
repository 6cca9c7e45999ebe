// Hand-written parsing of the numbers in graph text files (CSV and edge lists): unsigned and signed
// integers and float32 values read from a line in memory, with no locale, no iostreams and no
// allocation, so a parser loop runs at memory speed. Errors are reported by return value; the
// caller (graph_io) turns them into a UsageError naming file and line. Not a general CSV reader:
// no quoting, no escapes — graph files hold numbers only.
#pragma once

#include <cstdint>
#include <string_view>

namespace sparsetrain::teddy {

// A cursor over one line (without its newline). Fields are separated by `,` (CSV) or by runs of
// spaces/tabs (edge lists, when `whitespace` is set).
class LineCursor {
 public:
  LineCursor(std::string_view line, bool whitespace)
      : p_(line.data()), end_(line.data() + line.size()), whitespace_(whitespace) {}

  // Reads the next field as a base-10 unsigned integer <= max. False on empty, non-digit, overflow.
  bool read_u64(std::uint64_t& value, std::uint64_t max = UINT64_MAX);
  // Reads the next field as a base-10 signed 64-bit integer.
  bool read_i64(std::int64_t& value);
  // Reads the next field as a float32 (decimal or exponent notation, inf/nan rejected).
  bool read_f32(float& value);
  // After a field: consumes one separator. False when the line ended instead.
  bool skip_separator();
  // True when only trailing blanks (and a '\r') remain.
  bool at_end();
  // Number of fields in the rest of the line (for "expected N columns, got M" messages).
  std::size_t count_fields() const;

 private:
  void skip_blanks();
  const char* p_;
  const char* end_;
  bool whitespace_;
};

}  // namespace sparsetrain::teddy
