// HugePageAllocator: large arrays are 2 MiB-aligned and behave as ordinary vectors; small ones
// come from operator new. Whether the kernel backs them with huge pages is its choice (THP
// settings), so that is reported, not asserted.
#include "common/huge_page_allocator.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <numeric>
#include <string>

namespace st = sparsetrain;

TEST_CASE("a huge-page vector of 4 MiB is 2 MiB-aligned and holds what is written") {
  st::common::HugePageVector<double> v(std::size_t{1} << 19);  // 4 MiB
  CHECK(reinterpret_cast<std::uintptr_t>(v.data()) % st::common::kHugePageBytes == 0);
  CHECK(v[12345] == 0.0);  // value-initialised
  std::iota(v.begin(), v.end(), 0.0);
  CHECK(std::accumulate(v.begin(), v.end(), 0.0) ==
        static_cast<double>(v.size()) * static_cast<double>(v.size() - 1) / 2);
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode;
  std::getline(thp, mode);
  MESSAGE("transparent_hugepage/enabled: " << mode);
}

TEST_CASE("a small huge-page vector and growth across the 2 MiB threshold work like std::vector") {
  st::common::HugePageVector<std::uint32_t> v(3, 7u);
  CHECK(v[2] == 7u);
  for (std::uint32_t i = 0; i < (1u << 20); ++i) v.push_back(i);  // reallocates past 2 MiB
  CHECK(v.size() == 3 + (std::size_t{1} << 20));
  CHECK(v[1] == 7u);
  CHECK(v.back() == (1u << 20) - 1);
}
