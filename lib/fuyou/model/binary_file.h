// Plain POSIX file access for the fuyou readers and writers: `InputFile` (read-only, positional
// reads of exact byte counts) and `AtomicOutputFile` (streamed writes to `PATH.tmp.<pid>`, fsync,
// rename over PATH on commit, temp file removed if not committed). Large files (token shards,
// safetensors checkpoints) go straight into their destination buffers, never through a std::string.
// Not the SSD tensor store's I/O engine (io_uring, O_DIRECT): this is for one-off whole-file I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sparsetrain::fuyou {

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

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

class AtomicOutputFile {
 public:
  // Creates PATH.tmp.<pid>; UsageError when the directory is missing or not writable.
  explicit AtomicOutputFile(std::string path);
  // Without commit(): closes and removes the temporary file, leaving `path` untouched.
  ~AtomicOutputFile();
  AtomicOutputFile(const AtomicOutputFile&) = delete;
  AtomicOutputFile& operator=(const AtomicOutputFile&) = delete;

  void write(const void* data, std::size_t bytes);
  // fsync, close, rename over the final path, fsync the directory.
  void commit();

 private:
  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace sparsetrain::fuyou
