#include "common/mapped_file.h"

#include <sys/mman.h>

#include <cerrno>

#include "common/error.h"

namespace sparsetrain::common {

MappedFile::MappedFile(std::string path) : file_(std::move(path)) {
  if (file_.size() == 0) return;
  void* p = ::mmap(nullptr, static_cast<std::size_t>(file_.size()), PROT_READ, MAP_PRIVATE,
                   file_.descriptor(), 0);
  if (p == MAP_FAILED) throw_path_error("cannot map", file_.path(), errno);
  data_ = static_cast<const std::byte*>(p);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), static_cast<std::size_t>(file_.size()));
}

}  // namespace sparsetrain::common
