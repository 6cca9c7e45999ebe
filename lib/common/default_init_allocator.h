// An allocator adaptor that default-initialises instead of value-initialising: a
// std::vector<float, DefaultInitAllocator<float>>(n) leaves its floats unwritten (like new
// float[n]) rather than zero-filling them on the constructing thread. For arrays that a parallel
// loop fills completely right after: the zero fill of a 400 MB score array took 0.27 s on one
// thread here, about a sixth of scoring 10^8 edges, and the parallel loop's first touch faults the
// pages in on both cores instead. Reading an element before writing it is a bug (indeterminate
// value).
#pragma once

#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace sparsetrain::common {

template <typename T, typename Base = std::allocator<T>>
class DefaultInitAllocator : public Base {
  using Traits = std::allocator_traits<Base>;

 public:
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U, typename Traits::template rebind_alloc<U>>;
  };

  using Base::Base;
  DefaultInitAllocator() noexcept(std::is_nothrow_default_constructible<Base>::value) = default;
  template <typename U, typename B>
  DefaultInitAllocator(const DefaultInitAllocator<U, B>& other) noexcept
      : Base(static_cast<const B&>(other)) {}

  template <typename U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible<U>::value) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    Traits::construct(static_cast<Base&>(*this), p, std::forward<Args>(args)...);
  }
};

}  // namespace sparsetrain::common
