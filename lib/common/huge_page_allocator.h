// A std::allocator replacement that backs large arrays with transparent huge pages (2 MiB), for
// arrays read by random gathers: with 4 KiB pages a gather over a 128 MiB array misses the TLB on
// nearly every access (the TLB covers a few MiB), and the page walk costs as much as the load.
// Measured here (bench/huge_page_gather_bench, 2 threads, 2·10^8 skewed gathers from 2^24
// doubles): 134 → 237 M gathers/s.
// Allocations of 2 MiB or more are 2 MiB-aligned and advised with madvise(MADV_HUGEPAGE) before
// their first touch, so the kernel faults them in as huge pages where THP is "always" or
// "madvise" (the Debian default); smaller ones, or a kernel without THP, get plain pages — huge
// pages are an optimisation, never a requirement. Not a pool: every allocation is its own.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace sparsetrain::common {

constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

template <typename T>
class HugePageAllocator {
 public:
  using value_type = T;

  HugePageAllocator() noexcept = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>& /*other*/) noexcept {}

  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kHugePageBytes) {
      return static_cast<T*>(::operator new (bytes, std::align_val_t{alignof(T)}));
    }
    const std::size_t rounded = (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
    void* p = std::aligned_alloc(kHugePageBytes, rounded);
    if (p == nullptr) throw std::bad_alloc();
    // Advice only: EINVAL (no THP in this kernel) leaves ordinary pages, which is fine.
    (void)::madvise(p, rounded, MADV_HUGEPAGE);
    return static_cast<T*>(p);
  }

  void deallocate(T* p, std::size_t n) noexcept {
    if (n * sizeof(T) < kHugePageBytes) {
      ::operator delete (p, std::align_val_t{alignof(T)});
    } else {
      std::free(p);
    }
  }

  template <typename U>
  bool operator==(const HugePageAllocator<U>& /*other*/) const noexcept {
    return true;
  }
  template <typename U>
  bool operator!=(const HugePageAllocator<U>& /*other*/) const noexcept {
    return false;
  }
};

// A vector whose storage, when 2 MiB or larger, lives on transparent huge pages.
template <typename T>
using HugePageVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace sparsetrain::common
