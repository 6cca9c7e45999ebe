// A read-only file mapped into memory (mmap, MAP_PRIVATE): for inputs read at random many times
// over a run without a copy in RAM, e.g. token files of billions of tokens whose windows a trainer
// samples (the page cache holds what is touched). Opening checks as InputFile does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/input_file.h"

namespace sparsetrain::common {

class MappedFile {
 public:
  // Throws UsageError (missing, unreadable, a directory) or RunError (mmap failed) naming `path`.
  explicit MappedFile(std::string path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return file_.path(); }
  std::uint64_t size() const { return file_.size(); }
  const std::byte* data() const { return data_; }  // size() bytes; null for an empty file

 private:
  InputFile file_;
  const std::byte* data_ = nullptr;
};

}  // namespace sparsetrain::common
