// DefaultInitAllocator: sized construction leaves elements unwritten (not observable without
// undefined behaviour, so not asserted); explicit values, copies and growth behave as with
// std::allocator, and it stacks on HugePageAllocator.
#include "common/default_init_allocator.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include "common/huge_page_allocator.h"

namespace st = sparsetrain;

TEST_CASE("a default-init vector keeps explicit values, copies and grows like std::vector") {
  std::vector<int, st::common::DefaultInitAllocator<int>> v(5, 3);
  CHECK(std::accumulate(v.begin(), v.end(), 0) == 15);
  v.push_back(7);
  v.insert(v.begin(), 2);
  const auto copy = v;
  CHECK(copy.size() == 7);
  CHECK(copy.front() == 2);
  CHECK(copy.back() == 7);
}

TEST_CASE("a default-init vector on huge pages is 2 MiB-aligned and holds what is written") {
  using Alloc = st::common::DefaultInitAllocator<double, st::common::HugePageAllocator<double>>;
  std::vector<double, Alloc> v(std::size_t{1} << 19);  // 4 MiB, elements unwritten
  CHECK(reinterpret_cast<std::uintptr_t>(v.data()) % st::common::kHugePageBytes == 0);
  std::iota(v.begin(), v.end(), 1.0);
  CHECK(v[0] == 1.0);
  CHECK(v.back() == static_cast<double>(v.size()));
}
