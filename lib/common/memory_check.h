// Sizes implied by an input, checked against the machine before anything is allocated: a node
// count of 4·10^9 or a label of 2^31 should be refused with the field that implies it, not end in
// the allocator's "out of memory" after the work has started.
#pragma once

#include <cstdint>
#include <string>

namespace sparsetrain::common {

// Bytes of physical memory (sysconf: pages × page size); 0 when unknown.
std::uint64_t physical_memory_bytes();

// UsageError "<what> would take <bytes>, more than this machine's <memory> of memory" with `hint`
// when `bytes` exceeds physical memory (swap not counted: paged out, the work would run at disk
// speed). No-op when the memory is unknown.
void require_memory(std::uint64_t bytes, const std::string& what, const std::string& hint);

}  // namespace sparsetrain::common
