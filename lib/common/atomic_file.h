// Writing a file, or a directory tree, so that readers see either the old content or the whole
// new content, never a half-written one: write `PATH.tmp.<pid>`, fsync it, rename it over PATH,
// fsync the parent directory. The one implementation of that dance: run records, manifests,
// safetensors checkpoints, token files and saved graphs all go through it. Every write, sync and
// rename here is counted, and can be failed on purpose, by fault_injection.h.
// Not for the SSD tensor store's data files (io_engine.h: O_DIRECT, extents, its own commits).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sparsetrain::common {

// A file written in pieces to `PATH.tmp.<pid>` and renamed over PATH by commit(). Large outputs
// (checkpoints, token shards) stream from their own buffers, never through one std::string.
class AtomicFile {
 public:
  // Creates PATH.tmp.<pid>; UsageError when the directory is missing or not writable.
  explicit AtomicFile(std::string path);
  // Without commit(): closes and removes the temporary file, leaving `path` untouched.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::string& path() const { return path_; }
  // Appends `bytes` from `data`; RunError naming the path on ENOSPC or EIO.
  void write(const void* data, std::size_t bytes);
  void write(std::string_view text) { write(text.data(), text.size()); }
  // fsync, close, rename over the final path, fsync the directory. Once only.
  void commit();

 private:
  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

// A directory tree built under `PATH.tmp.<pid>` (temp_path()) and moved to PATH by commit().
// The caller writes the files inside (and fsyncs them: GzipWriter::close does); whatever is not
// committed is removed by the destructor, so a failure never leaves a half-written tree.
class AtomicDirectory {
 public:
  // Removes a stale PATH.tmp.<pid> (a crashed run with the same pid); creates nothing yet.
  explicit AtomicDirectory(std::string path);
  ~AtomicDirectory();  // without commit(): removes the temporary tree
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_path_; }
  // Removes an existing PATH (the caller decided it may be replaced), renames the temporary tree
  // to PATH and fsyncs the parent directory. Throws RunError/UsageError naming PATH.
  void commit();

 private:
  std::string path_;
  std::string tmp_path_;
  bool committed_ = false;
};

// Replaces `path` with `content` atomically (an AtomicFile). '-' writes to stdout instead. Throws
// UsageError (missing or unwritable directory) or RunError (ENOSPC, EIO) naming the path; on
// failure the temporary file is removed and `path` is untouched.
void write_file_atomic(const std::string& path, std::string_view content);

// fsync of the directory holding `path` (makes a rename durable).
void fsync_parent_dir(const std::string& path);

// fsync of an output file open as `fd` (writers outside AtomicFile, e.g. teddy's GzipWriter);
// RunError naming `path`. Like every write and sync here, counted by the fault injection
// (fault_injection.h: file-sync).
void sync_file(int fd, const std::string& path);

// Whole file as bytes; throws UsageError naming the path when it cannot be read.
std::string read_file(const std::string& path);

}  // namespace sparsetrain::common
