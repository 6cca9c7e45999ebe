// Line-oriented reading and deterministic writing of gzip (or plain) text files, over zlib.
// `TextFileReader` hands out complete lines with their 1-based line numbers and reports a
// truncated or corrupt gzip stream as a UsageError naming the file; decompression runs on a
// helper thread so that parsing and inflating overlap. `GzipWriter` writes a gzip stream with
// mtime 0 and no file name, so the same content always gives the same bytes. Not a CSV parser
// (see text_parse.h) and not seekable.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

namespace sparsetrain::teddy {

class TextFileReader {
 public:
  // Opens `path`; gzip when it starts with the gzip magic, else plain text. Throws UsageError when
  // it cannot be opened.
  explicit TextFileReader(std::string path);
  ~TextFileReader();
  TextFileReader(const TextFileReader&) = delete;
  TextFileReader& operator=(const TextFileReader&) = delete;

  // Next line without its '\n' (a '\r' before it is kept for the parser to skip). False at the
  // end of the file. Throws UsageError on a truncated or corrupt gzip stream.
  bool next_line(std::string_view& line);
  // 1-based number of the line last returned.
  std::uint64_t line_number() const { return line_number_; }
  const std::string& path() const { return path_; }
  // Bytes of the file on disk (compressed size for gzip), for throughput figures.
  std::uint64_t file_bytes() const { return file_bytes_; }
  // "FILE:LINE" for error messages.
  std::string where() const;

 private:
  bool refill();
  struct Inflater;
  std::string path_;
  std::unique_ptr<Inflater> inflater_;
  std::string buffer_;   // current chunk plus the carried-over partial line
  std::size_t pos_ = 0;  // start of the next line in buffer_
  bool eof_ = false;
  std::uint64_t line_number_ = 0;
  std::uint64_t file_bytes_ = 0;
};

// Decompresses a whole gzip stream held in memory (for the fuzz harness and tests). Throws
// UsageError naming `name` when the stream is truncated or corrupt.
std::string gunzip_buffer(std::string_view compressed, const std::string& name);

class GzipWriter {
 public:
  // Creates `path` (truncating it). Compression level 1..9; level 1 keeps writing graphs of 1e8
  // edges fast. Throws UsageError/RunError naming the path when it cannot be created.
  GzipWriter(std::string path, int level);
  ~GzipWriter();  // closes without syncing when close() was not called (error paths)
  GzipWriter(const GzipWriter&) = delete;
  GzipWriter& operator=(const GzipWriter&) = delete;

  // Buffers `text`; compresses and writes whenever 1 MiB has gathered.
  void write(std::string_view text);
  // Ends the gzip stream, flushes and fsyncs the file. Throws RunError on ENOSPC/EIO.
  void close();
  std::uint64_t bytes_written() const { return bytes_written_; }

 private:
  void deflate_pending(int flush);
  std::string path_;
  std::FILE* file_ = nullptr;
  z_stream stream_{};
  std::string pending_;
  std::string out_;
  std::uint64_t bytes_written_ = 0;
};

}  // namespace sparsetrain::teddy
