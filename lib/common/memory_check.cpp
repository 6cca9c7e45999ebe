// Input sizes against physical memory (see memory_check.h).
#include "common/memory_check.h"

#include <unistd.h>

#include "common/error.h"
#include "common/units.h"

namespace sparsetrain::common {

std::uint64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
}

void require_memory(std::uint64_t bytes, const std::string& what, const std::string& hint) {
  const std::uint64_t total = physical_memory_bytes();
  if (total == 0 || bytes <= total) return;
  throw UsageError(what + " would take " + format_bytes(static_cast<double>(bytes)) +
                       ", more than this machine's " + format_bytes(static_cast<double>(total)) +
                       " of memory",
                   hint);
}

}  // namespace sparsetrain::common
