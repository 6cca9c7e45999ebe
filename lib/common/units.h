// Human-friendly quantities on the command line: sizes ("24GiB", "1.5TB", "4096") and durations
// ("500ms", "2.5s", "3min"). Binary prefixes (KiB..TiB) are powers of 1024, decimal ones (kB..TB)
// powers of 1000; a bare number is bytes or seconds. Parse errors are UsageErrors with a hint.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sparsetrain::common {

// Bytes; throws UsageError on empty, negative, unknown suffix or overflow past 2^64 - 1.
std::uint64_t parse_bytes(std::string_view text);
// Seconds; throws UsageError on empty, negative or unknown suffix.
double parse_duration(std::string_view text);

// "1.50 GiB", "512 B": three significant digits, binary prefixes.
std::string format_bytes(double bytes);
// "850 ms", "12.3 s", "4 min 05 s", "2 h 03 min".
std::string format_duration(double seconds);

}  // namespace sparsetrain::common
