// CRC-32C against its published check value and the hardware path against the table path.
#include "fuyou/store/crc32c.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/io/io_test_util.h"

using sparsetrain::fuyou::crc32c;
using sparsetrain::fuyou::crc32c_portable;

TEST_CASE("crc32c of \"123456789\" is the standard check value 0xE3069283") {
  const char* text = "123456789";
  CHECK(crc32c(text, 9) == 0xE3069283u);
  CHECK(crc32c_portable(text, 9) == 0xE3069283u);
  CHECK(crc32c(text, 0) == 0u);
}

TEST_CASE("crc32c of 32 zero bytes is 0x8A9136AA (RFC 3720 B.4)") {
  std::vector<unsigned char> zeros(32, 0);
  CHECK(crc32c(zeros.data(), zeros.size()) == 0x8A9136AAu);
  CHECK(crc32c_portable(zeros.data(), zeros.size()) == 0x8A9136AAu);
}

TEST_CASE("crc32c gives the same value in pieces, at odd offsets, by both implementations") {
  std::vector<unsigned char> data(10007);
  sparsetrain::test::fill_pattern(data.data(), data.size(), 3);
  for (std::size_t start : {0, 1, 3, 7}) {
    for (std::size_t len : {0, 1, 7, 8, 9, 4095, 10000}) {
      const std::uint32_t whole = crc32c(data.data() + start, len);
      CHECK(whole == crc32c_portable(data.data() + start, len));
      const std::size_t half = len / 3;
      CHECK(whole ==
            crc32c(data.data() + start + half, len - half, crc32c(data.data() + start, half)));
    }
  }
}
