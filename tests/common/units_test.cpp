#include "common/units.h"

#include <doctest/doctest.h>

#include "common/error.h"

using namespace sparsetrain::common;

TEST_CASE("sizes parse with binary and decimal prefixes") {
  CHECK(parse_bytes("4096") == 4096);
  CHECK(parse_bytes("24GiB") == 24ull << 30);
  CHECK(parse_bytes("1.5TB") == 1500000000000ull);
  CHECK(parse_bytes("1 MiB") == 1048576);
  CHECK(parse_bytes("2K") == 2048);
  CHECK(parse_bytes("0.5KiB") == 512);
  CHECK(parse_bytes("0") == 0);
}

TEST_CASE("bad sizes are usage errors with a hint") {
  for (const char* bad : {"", "GiB", "-1GiB", "12parsecs", "1.0000001KiB", "1e30TiB", "nan"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_bytes(bad), UsageError);
    try {
      parse_bytes(bad);
    } catch (const UsageError& e) {
      CHECK_FALSE(e.hint().empty());
      CHECK(e.code() == ExitCode::kUsage);
    }
  }
}

TEST_CASE("durations parse from ns to hours") {
  CHECK(parse_duration("500ms") == doctest::Approx(0.5));
  CHECK(parse_duration("2.5s") == doctest::Approx(2.5));
  CHECK(parse_duration("3min") == doctest::Approx(180));
  CHECK(parse_duration("1h") == doctest::Approx(3600));
  CHECK(parse_duration("7") == doctest::Approx(7));
  CHECK(parse_duration("250us") == doctest::Approx(250e-6));
  CHECK_THROWS_AS(parse_duration("5 fortnights"), UsageError);
  CHECK_THROWS_AS(parse_duration("-1s"), UsageError);
}

TEST_CASE("sizes and durations format for people") {
  CHECK(format_bytes(512) == "512 B");
  CHECK(format_bytes(1536) == "1.50 KiB");
  CHECK(format_bytes(24.0 * (1ull << 30)) == "24.0 GiB");
  CHECK(format_bytes(300.0 * (1ull << 20)) == "300 MiB");
  CHECK(format_duration(0.25) == "250 ms");
  CHECK(format_duration(12.34) == "12.3 s");
  CHECK(format_duration(245) == "4 min 05 s");
  CHECK(format_duration(7380) == "2 h 03 min");
}
