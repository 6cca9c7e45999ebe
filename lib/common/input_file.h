// A read-only file with positional reads of exact byte counts (pread), for readers that put large
// files (token shards, safetensors checkpoints) straight into their destination buffers, never
// through a std::string. Its writing counterpart is AtomicFile (atomic_file.h). Not the SSD tensor
// store's I/O engine (io_engine.h: io_uring, O_DIRECT): this is for one-off whole-file I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sparsetrain::common {

class InputFile {
 public:
  // Throws UsageError (missing, unreadable, a directory) or RunError naming `path`.
  explicit InputFile(std::string path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& path() const { return path_; }
  std::uint64_t size() const { return size_; }  // bytes, at open time
  // Reads exactly `bytes` at `offset` into dst; RunError on I/O error or a file that shrank.
  void read_exact(std::uint64_t offset, void* dst, std::size_t bytes) const;
  int descriptor() const { return fd_; }  // open read-only for this object's life (MappedFile)

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

}  // namespace sparsetrain::common
