// The SSD tensor store of Fuyou: named tensors (dtype, shape, raw bytes) laid out in fixed-size
// extents striped round-robin across N directories (one data file per directory, no RAID), read
// and written whole or by byte range, asynchronously, into caller buffers (pinned and 4096-aligned
// for the zero-copy path; any others go through bounce buffers).
//
// Crash safety (copy-on-write by extent): every extent has two slots on disk. A write goes to the
// slot the last commit does not reference; commit() waits for the writes, fdatasyncs the data files
// and then replaces the JSON manifest atomically (temp, fsync, rename, fsync dir). A process killed
// mid-update, a full disk or an I/O error therefore leaves the store at its last committed version,
// byte for byte; commit() after a failed write rolls the staged changes back and rethrows. Each
// extent carries a CRC-32C (our own, SSE4.2 or table: fuyou/store/crc32c.h) checked by
// read(verify=true) and verify(). Costs: 2x the tensors' size on disk; a tensor's space is never
// reused. Scratch tensors (TensorKind::kScratch: what a run rewrites before it reads, e.g. its
// gradient accumulators) have one slot per extent and are written in place: half the space, and
// no crash safety — after a kill, a failed write or a rollback their bytes are undefined (and
// their checksums unchecked); everything else keeps the guarantee above. In-place tensors
// (TensorKind::kInPlace: a caller that journals its own updates, e.g. a trainer's one-slot states)
// are written in place too but keep checksums: those of the last commit, which verify() and
// read(verify) check; bytes written since then are the caller's to vouch for — after a crash it
// adopts them (adopt_checksums) or rewrites them, and sync() makes them durable between commits.
//
// Layout: manifest `<dirs[0]>/sparsetrain-store.json`; data `<dirs[i]>/sparsetrain-store.<i>.dat`.
// Extent k of a tensor lives in dir (first_dir + k) % N at byte base[dir] + ((k / N) * S + slot) *
// extent_bytes, S = 2 slots per extent (1 for scratch tensors). Not a database: no deletion, no
// free-space reuse, and concurrent calls must not write the same tensor range at once.
//
// One process per store: an open store holds an exclusive flock on `<dirs[0]>/sparsetrain-store.
// lock` (which names its pid) for its lifetime; the kernel drops it when the process dies, however
// it dies. A second open or create, in another process or this one, is refused naming the holder.
// Holding it, open and create remove the manifest temp files a killed commit left. No torch here.
#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/io/io_engine.h"

namespace sparsetrain::fuyou {

enum class StoreDType : std::uint8_t { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };
// Safetensors spelling: "F32", "BF16", "I64", "U8", "BOOL", ...
const char* store_dtype_name(StoreDType dtype);
StoreDType parse_store_dtype(std::string_view name);  // throws UsageError
std::size_t store_dtype_size(StoreDType dtype);       // bytes per element

struct StoreOptions {
  common::io::IoOptions io;
  std::uint64_t extent_bytes = std::uint64_t{4} << 20;  // striping unit; multiple of 4096
  // Each commit first keeps the commit it replaces as kPreviousManifestName. Its data stays valid
  // until the next commit's first write (copy-on-write writes go to the slots it references): a
  // data-parallel rank that committed one step more than another rank, which cannot have written
  // anything of the step after it, opens it to fall back to the others' step.
  bool keep_previous = false;
  // open(): the previous commit instead of the last (UsageError when none was kept).
  bool open_previous = false;
};

// Durable: copy-on-write, two slots per extent (the crash guarantee). Scratch: one slot, in place,
// unchecked. In place: one slot, in place, checked against the checksums of the last commit.
enum class TensorKind : std::uint8_t { kDurable, kScratch, kInPlace };

struct TensorInfo {
  std::string name;
  StoreDType dtype = StoreDType::kF32;
  std::vector<std::int64_t> shape;
  std::uint64_t bytes = 0;    // numel * dtype size
  std::uint64_t version = 0;  // commits that changed this tensor
  bool scratch = false;       // TensorKind::kScratch
  bool in_place = false;      // TensorKind::kInPlace
};

struct VerifyReport {
  std::uint64_t store_version = 0;
  std::uint64_t tensors = 0;
  std::uint64_t extents = 0;
  std::uint64_t bytes = 0;
  std::uint64_t scratch_tensors = 0;  // not checked: written in place, no committed bytes
  std::vector<std::string> problems;  // one line each; empty = every checksum matched
  bool ok() const { return problems.empty(); }
};

class TensorStore {
 public:
  static constexpr std::uint64_t kWhole = ~std::uint64_t{0};
  static constexpr const char* kManifestName = "sparsetrain-store.json";
  static constexpr const char* kPreviousManifestName = "sparsetrain-store.prev.json";
  static constexpr const char* kLockName = "sparsetrain-store.lock";
  // The data file of directory `index` (in --ssd order): "sparsetrain-store.<index>.dat".
  static std::string data_file_name(std::size_t index);

  // A new, empty store at version 0 in `dirs` (existing directories). UsageError when a store
  // already exists there (its manifest, or a data file this store would overwrite) or a directory
  // is missing/unwritable. A store that holds nothing (version 0, no tensor: its creator stopped
  // before its first commit) over the same directories is replaced.
  static std::unique_ptr<TensorStore> create(const std::vector<std::string>& dirs,
                                             StoreOptions options = {});
  // Deletes the files of the store create(dirs) made (manifest, data files), for a caller that
  // created one and failed before using it; no store object may have them open. Errors ignored.
  static void remove_new(const std::vector<std::string>& dirs);
  // Opens the store in `dirs` (the order given at creation) at its last committed version. A store
  // that fails its checks (malformed manifest, missing or short data file) is refused: RunError.
  static std::unique_ptr<TensorStore> open(const std::vector<std::string>& dirs,
                                           StoreOptions options = {});
  // Waits for I/O in flight; uncommitted changes are dropped (the disk keeps the last commit).
  ~TensorStore();
  TensorStore(const TensorStore&) = delete;
  TensorStore& operator=(const TensorStore&) = delete;

  std::uint64_t version() const;  // last committed store version (0 = empty store)
  std::vector<TensorInfo> tensors() const;
  TensorInfo info(const std::string& name) const;  // UsageError when unknown
  bool contains(const std::string& name) const;
  const std::vector<std::string>& dirs() const { return dirs_; }
  std::uint64_t extent_bytes() const { return extent_bytes_; }
  common::io::IoEngine& engine() { return *engine_; }

  // Declares tensor `name` (staged until commit) and reserves its space (its slots) on every
  // directory: a full disk fails here with an IoError (ENOSPC). Reads as zeros until written.
  // UsageError when the name exists.
  void define(const std::string& name, StoreDType dtype, std::vector<std::int64_t> shape,
              TensorKind kind = TensorKind::kDurable);

  // Writes bytes [offset, offset + bytes) of tensor `name` from `src` (that many bytes). Staged
  // until commit(). Edge extents only partly covered are read-modified-written before this returns;
  // the rest completes asynchronously: keep `src` valid until the future is ready (or commit()).
  std::shared_future<void> write(const std::string& name, const void* src, std::uint64_t offset = 0,
                                 std::uint64_t bytes = kWhole);
  // Reads bytes [offset, offset + bytes) of tensor `name` (as staged: writes are visible once their
  // future is ready) into `dst`. With `verify`, waits and checks every touched extent's CRC-32C:
  // RunError on mismatch.
  std::shared_future<void> read(const std::string& name, void* dst, std::uint64_t offset = 0,
                                std::uint64_t bytes = kWhole, bool verify = false);

  // Makes every staged define and write durable as store version version() + 1. If a staged write
  // failed, rolls back to the last commit and rethrows its error. No-op when nothing is staged.
  void commit();
  // Waits for writes in flight and drops every staged change.
  void rollback();
  // Waits for every write in flight and fdatasyncs the data files, without a commit: what scratch
  // and in-place tensors hold is then on disk (durable tensors' writes stay staged until commit).
  // Rethrows a failed write's error (commit() then refuses too).
  void sync();
  // Bytes [offset, offset + bytes) of in-place tensor `name` were written by a process that stopped
  // before committing them: recomputes their extents' checksums from the disk (staged until
  // commit). UsageError for a tensor that is not in place.
  void adopt_checksums(const std::string& name, std::uint64_t offset, std::uint64_t bytes);

  // Reads every committed extent and checks its CRC-32C; lists mismatches (never throws for them).
  VerifyReport verify();

 private:
  struct Tensor;
  struct Layout;
  TensorStore(std::vector<std::string> dirs, StoreOptions options);
  // Takes the store's lock (UsageError naming the holder's pid when another holds it) and removes
  // stale manifest temp files.
  void lock_store();
  void open_files(bool create);
  void load_manifest();
  std::string manifest_json() const;
  std::string manifest_path() const;
  void wait_pending(std::exception_ptr* first_error);
  void restore_committed();
  // The tensor called `name` (mutex_ held); UsageError naming the store when there is none.
  std::shared_ptr<Tensor> find_locked(const std::string& name) const;

  // The lock file's descriptor, closed (the lock released) when the store goes, also when its
  // constructor throws.
  struct LockFile {
    int fd = -1;
    LockFile() = default;
    LockFile(const LockFile&) = delete;
    LockFile& operator=(const LockFile&) = delete;
    ~LockFile();
  };

  std::vector<std::string> dirs_;
  LockFile lock_;
  StoreOptions options_;
  std::uint64_t extent_bytes_;
  std::unique_ptr<common::io::IoEngine> engine_;
  std::vector<common::io::FileId> files_;  // one per dir
  std::vector<bool> direct_;               // per file: O_DIRECT (alignment rules apply)

  mutable std::mutex mutex_;  // guards everything below
  std::uint64_t version_ = 0;
  std::vector<std::shared_ptr<Tensor>> tensors_;  // staged view, in definition order
  std::vector<std::uint64_t> file_bytes_;         // staged allocation end per file
  std::string committed_manifest_;                // JSON of the last commit (for rollback)
  bool staged_ = false;
  std::exception_ptr failed_write_;  // a write() that threw after staging: commit() must refuse
  struct Pending;
  std::vector<std::shared_ptr<Pending>> pending_;
};

}  // namespace sparsetrain::fuyou
