#include "fuyou/store/tensor_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/io/aligned_buffer.h"
#include "common/log.h"
#include "fuyou/store/crc32c.h"

namespace sparsetrain::fuyou {

namespace io = common::io;
using common::cat;
using common::RunError;
using common::UsageError;

namespace {

constexpr const char* kFormat = "sparsetrain-tensor-store";
// 3: tensors may be in place ("in_place": true: one slot, checked); 2: tensors may be scratch (one
// slot per extent, "scratch": true); 1 (every tensor two slots). All three are read.
constexpr int kFormatVersion = 3;

struct DTypeRow {
  StoreDType dtype;
  const char* name;
  std::size_t size;
};
constexpr DTypeRow kDTypes[] = {{StoreDType::kF32, "F32", 4},   {StoreDType::kF16, "F16", 2},
                                {StoreDType::kBF16, "BF16", 2}, {StoreDType::kF64, "F64", 8},
                                {StoreDType::kI64, "I64", 8},   {StoreDType::kI32, "I32", 4},
                                {StoreDType::kI16, "I16", 2},   {StoreDType::kI8, "I8", 1},
                                {StoreDType::kU8, "U8", 1},     {StoreDType::kBool, "BOOL", 1}};

std::uint64_t align_down(std::uint64_t x) { return x / io::kIoAlignment * io::kIoAlignment; }
bool aligned_ptr(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % io::kIoAlignment == 0;
}

// CRC-32C of `bytes` zero bytes (extents that were reserved and never written read as zeros).
std::uint32_t zero_crc(std::uint64_t bytes) {
  static const std::vector<std::byte> zeros(std::size_t{1} << 20);
  std::uint32_t crc = 0;
  for (std::uint64_t done = 0; done < bytes;) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), bytes - done));
    crc = crc32c(zeros.data(), n, crc);
    done += n;
  }
  return crc;
}

}  // namespace

const char* store_dtype_name(StoreDType dtype) {
  for (const DTypeRow& row : kDTypes)
    if (row.dtype == dtype) return row.name;
  return "?";
}

StoreDType parse_store_dtype(std::string_view name) {
  for (const DTypeRow& row : kDTypes)
    if (name == row.name) return row.dtype;
  throw UsageError(cat("unknown dtype '", name, "'"),
                   "use F32, F16, BF16, F64, I64, I32, I16, I8, U8 or BOOL");
}

std::size_t store_dtype_size(StoreDType dtype) {
  for (const DTypeRow& row : kDTypes)
    if (row.dtype == dtype) return row.size;
  return 1;
}

// One tensor: its description, where its extents live, and per extent the slot and CRC as staged
// (`slot`, `crc`) and as last committed (`committed_slot`).
struct TensorStore::Tensor {
  TensorInfo info;
  unsigned first_dir = 0;
  std::vector<std::uint64_t> base;  // per dir: byte offset of this tensor's region
  std::vector<std::uint8_t> slot;   // per extent, staged
  std::vector<std::uint8_t> committed_slot;
  std::vector<std::uint32_t> crc;  // per extent, of its logical bytes (staged)
  bool dirty = false;              // changed since the last commit
  bool scratch = false;            // TensorKind::kScratch: one slot per extent, written in place
  bool in_place = false;           // TensorKind::kInPlace: so too, but its checksums are checked
  bool one_slot() const { return scratch || in_place; }
  std::uint64_t slots_per_extent() const { return one_slot() ? 1 : 2; }
};

// Writes in flight with the bounce buffers they read from.
struct TensorStore::Pending {
  std::shared_future<void> done;
  std::vector<io::AlignedBuffer> buffers;
};

namespace {

struct ExtentPlace {
  unsigned dir;
  std::uint64_t offset;  // byte offset of the slot in dir's file
  std::uint64_t begin;   // first tensor byte of the extent
  std::uint64_t bytes;   // logical bytes of the extent (the last one may be short)
};

}  // namespace

TensorStore::TensorStore(std::vector<std::string> dirs, StoreOptions options)
    : dirs_(std::move(dirs)), options_(options), extent_bytes_(options.extent_bytes) {
  if (dirs_.empty()) throw UsageError("no store directories given", "pass --ssd DIR[,DIR...]");
  if (extent_bytes_ == 0 || extent_bytes_ % io::kIoAlignment != 0) {
    throw UsageError(cat("extent size ", extent_bytes_, " is not a multiple of 4096"),
                     "use a multiple of 4KiB, e.g. 4MiB");
  }
  for (const std::string& dir : dirs_) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
      common::throw_path_error("cannot use store directory", dir, errno,
                               "create it, or pass --ssd an existing directory");
    }
    if (!S_ISDIR(st.st_mode)) {
      common::throw_path_error("cannot use store directory", dir, ENOTDIR,
                               "pass --ssd a directory");
    }
  }
  lock_store();
  engine_ = io::IoEngine::create(options_.io, dirs_);
}

TensorStore::LockFile::~LockFile() {
  if (fd >= 0) ::close(fd);
}

void TensorStore::lock_store() {
  const std::string path = dirs_[0] + "/" + kLockName;
  lock_.fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_.fd < 0) {
    common::throw_path_error("cannot create the store's lock file", path, errno,
                             "make the store directory writable");
  }
  if (::flock(lock_.fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) {
      common::throw_path_error("cannot lock the store", path, err,
                               "put the store on a local file system that supports flock");
    }
    std::string holder;
    try {
      holder = common::read_file(path);
    } catch (const std::exception&) {
    }
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    throw UsageError(cat("the tensor store in '", dirs_[0], "' is in use by ",
                         holder.empty() ? std::string("another process") : "process " + holder),
                     "one process per store: wait for that run to finish (or stop it), or give "
                     "this one other --ssd directories");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_.fd, 0) != 0 ||
      ::pwrite(lock_.fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    common::throw_path_error("cannot write the store's lock file", path, errno,
                             "check the store directory's free space");
  }
  // Holding the lock, no commit is in flight: a manifest temp file is a killed commit's.
  const std::string stale = std::string(kManifestName) + ".tmp.";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dirs_[0], ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(stale, 0) != 0) continue;
    std::error_code failed;
    if (std::filesystem::remove(entry.path(), failed))
      common::log_info("tensor store: removed '", entry.path().string(),
                       "', left by a commit that did not finish");
  }
}

TensorStore::~TensorStore() {
  std::exception_ptr ignored;
  wait_pending(&ignored);
}

std::string TensorStore::manifest_path() const { return dirs_[0] + "/" + kManifestName; }

void TensorStore::open_files(bool create) {
  for (std::size_t i = 0; i < dirs_.size(); ++i) {
    const std::string path = dirs_[i] + "/" + data_file_name(i);
    if (!create && ::access(path.c_str(), F_OK) != 0) {
      throw RunError(cat("store data file '", path, "' is missing"),
                     "pass --ssd the directories in the order the store was created with");
    }
    files_.push_back(
        engine_->open_file(path, create ? io::OpenMode::kCreate : io::OpenMode::kReadWrite));
    direct_.push_back(engine_->is_direct(files_.back()));
  }
}

std::string TensorStore::data_file_name(std::size_t index) {
  return cat("sparsetrain-store.", index, ".dat");
}

std::unique_ptr<TensorStore> TensorStore::create(const std::vector<std::string>& dirs,
                                                 StoreOptions options) {
  std::unique_ptr<TensorStore> store(new TensorStore(dirs, options));
  if (::access(store->manifest_path().c_str(), F_OK) == 0) {
    // An empty store over the same directories (its creator stopped before its first commit)
    // holds nothing to lose: it is replaced. Anything else is refused.
    bool empty = false;
    try {
      const nlohmann::json m = nlohmann::json::parse(common::read_file(store->manifest_path()));
      empty = m.at("version").get<std::uint64_t>() == 0 && m.at("tensors").empty() &&
              m.at("dirs").get<std::vector<std::string>>() == dirs;
    } catch (const std::exception&) {
    }
    if (!empty) {
      throw UsageError(cat("a tensor store already exists in '", dirs[0], "'"),
                       "open it instead, or remove its files to start over");
    }
    common::log_info("tensor store: replacing the empty store in '", dirs[0],
                     "' (its run stopped before its first commit)");
    std::error_code ignored;
    std::filesystem::remove(store->manifest_path(), ignored);
    for (std::size_t i = 0; i < dirs.size(); ++i)
      std::filesystem::remove(dirs[i] + "/" + data_file_name(i), ignored);
  }
  for (std::size_t i = 0; i < dirs.size(); ++i) {  // another store's data, listed elsewhere first
    const std::string path = dirs[i] + "/" + data_file_name(i);
    if (::access(path.c_str(), F_OK) == 0) {
      throw UsageError(cat("a tensor store data file already exists: '", path, "'"),
                       "give --ssd directories without a store, or remove that store's files");
    }
  }
  store->open_files(/*create=*/true);
  store->file_bytes_.assign(dirs.size(), 0);
  store->committed_manifest_ = store->manifest_json();
  common::write_file_atomic(store->manifest_path(), store->committed_manifest_);
  return store;
}

void TensorStore::remove_new(const std::vector<std::string>& dirs) {
  if (dirs.empty()) return;
  std::error_code ignored;
  std::filesystem::remove(dirs[0] + "/" + kManifestName, ignored);
  std::filesystem::remove(dirs[0] + "/" + kPreviousManifestName, ignored);
  for (std::size_t i = 0; i < dirs.size(); ++i)
    std::filesystem::remove(dirs[i] + "/" + data_file_name(i), ignored);
}

std::unique_ptr<TensorStore> TensorStore::open(const std::vector<std::string>& dirs,
                                               StoreOptions options) {
  std::unique_ptr<TensorStore> store(new TensorStore(dirs, options));
  const std::string path = store->manifest_path();
  if (::access(path.c_str(), F_OK) != 0) {
    throw UsageError(cat("no tensor store in '", dirs[0], "' (no ", kManifestName, ")"),
                     "give the directories of an existing store (--ssd or the command line), first "
                     "directory first");
  }
  if (options.open_previous) {
    const std::string previous = dirs[0] + "/" + kPreviousManifestName;
    if (::access(previous.c_str(), F_OK) != 0) {
      throw UsageError(cat("the store in '", dirs[0], "' kept no previous commit (no ",
                           kPreviousManifestName, ")"),
                       "only data-parallel runs keep one; resume from the last commit");
    }
    store->committed_manifest_ = common::read_file(previous);
  } else {
    store->committed_manifest_ = common::read_file(path);
  }
  store->load_manifest();
  store->open_files(/*create=*/false);
  for (std::size_t i = 0; i < dirs.size(); ++i) {
    const std::uint64_t size = store->engine_->file_size(store->files_[i]);
    if (size < store->file_bytes_[i]) {
      throw RunError(cat("store data file '", store->engine_->path(store->files_[i]), "' has ",
                         size, " bytes but the manifest needs ", store->file_bytes_[i]),
                     "the file was truncated or replaced; restore it or recreate the store");
    }
  }
  return store;
}

// Rebuilds the staged state from committed_manifest_, checking it thoroughly.
void TensorStore::load_manifest() {
  const std::string path = manifest_path();
  auto bad = [&](const std::string& why) {
    return RunError(cat("tensor store manifest '", path, "' is invalid: ", why),
                    "the store cannot be used; restore the manifest or recreate the store");
  };
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(committed_manifest_);
  } catch (const std::exception& e) {
    throw bad(e.what());
  }
  try {
    if (m.at("format") != kFormat) throw bad("not a sparsetrain tensor store");
    const int format_version = m.at("format_version").get<int>();
    if (format_version < 1 || format_version > kFormatVersion)
      throw bad("unsupported format_version");
    if (m.at("checksum") != "crc32c") throw bad("unknown checksum");
    const auto& files = m.at("files");
    if (files.size() != dirs_.size()) {
      throw UsageError(cat("the store in '", dirs_[0], "' spans ", files.size(), " directories, ",
                           dirs_.size(), " given"),
                       cat("pass all of them, in order: ", m.at("dirs").dump()));
    }
    extent_bytes_ = m.at("extent_bytes").get<std::uint64_t>();
    if (extent_bytes_ == 0 || extent_bytes_ % io::kIoAlignment != 0)
      throw bad("extent_bytes not a multiple of 4096");
    version_ = m.at("version").get<std::uint64_t>();
    file_bytes_.clear();
    for (const auto& f : files) file_bytes_.push_back(f.at("bytes").get<std::uint64_t>());
    tensors_.clear();
    const std::size_t n_dirs = dirs_.size();
    for (const auto& t : m.at("tensors")) {
      auto tensor = std::make_shared<Tensor>();
      tensor->info.name = t.at("name").get<std::string>();
      tensor->info.dtype = parse_store_dtype(t.at("dtype").get<std::string>());
      tensor->info.shape = t.at("shape").get<std::vector<std::int64_t>>();
      tensor->info.bytes = t.at("bytes").get<std::uint64_t>();
      tensor->info.version = t.at("version").get<std::uint64_t>();
      tensor->first_dir = t.at("first_dir").get<unsigned>();
      tensor->base = t.at("base").get<std::vector<std::uint64_t>>();
      const std::string slots = t.at("slots").get<std::string>();
      tensor->crc = t.at("crc").get<std::vector<std::uint32_t>>();
      tensor->scratch = t.value("scratch", false);
      tensor->info.scratch = tensor->scratch;
      tensor->in_place = t.value("in_place", false);
      tensor->info.in_place = tensor->in_place;
      if (tensor->scratch && tensor->in_place)
        throw bad(cat("tensor '", tensor->info.name, "' is both scratch and in place"));
      std::uint64_t numel = 1;
      for (std::int64_t d : tensor->info.shape) {
        if (d < 0) throw bad(cat("tensor '", tensor->info.name, "' has a negative dimension"));
        numel *= static_cast<std::uint64_t>(d);
      }
      const std::uint64_t n_extents = (tensor->info.bytes + extent_bytes_ - 1) / extent_bytes_;
      if (numel * store_dtype_size(tensor->info.dtype) != tensor->info.bytes ||
          tensor->first_dir >= n_dirs || tensor->base.size() != n_dirs ||
          slots.size() != n_extents || tensor->crc.size() != n_extents) {
        throw bad(cat("tensor '", tensor->info.name, "' has an inconsistent layout"));
      }
      for (std::size_t d = 0; d < n_dirs; ++d) {
        const std::uint64_t local =
            (n_extents + n_dirs - (d + n_dirs - tensor->first_dir) % n_dirs - 1) / n_dirs;
        if (tensor->base[d] + local * tensor->slots_per_extent() * extent_bytes_ > file_bytes_[d]) {
          throw bad(cat("tensor '", tensor->info.name, "' lies beyond its data file"));
        }
      }
      for (char c : slots) {
        if (c != '0' && (c != '1' || tensor->one_slot()))
          throw bad(cat("tensor '", tensor->info.name, "' has a bad slot"));
        tensor->slot.push_back(static_cast<std::uint8_t>(c - '0'));
      }
      tensor->committed_slot = tensor->slot;
      tensors_.push_back(std::move(tensor));
    }
  } catch (const nlohmann::json::exception& e) {
    throw bad(e.what());
  }
  staged_ = false;
}

std::string TensorStore::manifest_json() const {
  nlohmann::json files = nlohmann::json::array();
  for (std::size_t i = 0; i < dirs_.size(); ++i) {
    files.push_back({{"name", data_file_name(i)}, {"bytes", file_bytes_[i]}});
  }
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : tensors_) {
    std::string slots;
    for (std::uint8_t s : t->slot) slots.push_back(static_cast<char>('0' + s));
    tensors.push_back({{"name", t->info.name},
                       {"dtype", store_dtype_name(t->info.dtype)},
                       {"shape", t->info.shape},
                       {"bytes", t->info.bytes},
                       {"version", t->info.version},
                       {"first_dir", t->first_dir},
                       {"base", t->base},
                       {"slots", slots},
                       {"scratch", t->scratch},
                       {"in_place", t->in_place},
                       {"crc", t->crc}});
  }
  // The oldest format that holds these tensors: a store without in-place tensors stays readable
  // by builds that know format 2.
  bool any_in_place = false;
  for (const auto& t : tensors_) any_in_place = any_in_place || t->in_place;
  nlohmann::json m = {{"format", kFormat},
                      {"format_version", any_in_place ? kFormatVersion : 2},
                      {"version", version_},
                      {"checksum", "crc32c"},
                      {"extent_bytes", extent_bytes_},
                      {"dirs", dirs_},
                      {"files", files},
                      {"tensors", tensors}};
  return m.dump(1) + "\n";
}

std::uint64_t TensorStore::version() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return version_;
}

std::vector<TensorInfo> TensorStore::tensors() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<TensorInfo> out;
  for (const auto& t : tensors_) out.push_back(t->info);
  return out;
}

bool TensorStore::contains(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& t : tensors_)
    if (t->info.name == name) return true;
  return false;
}

std::shared_ptr<TensorStore::Tensor> TensorStore::find_locked(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t->info.name == name) return t;
  throw UsageError(cat("no tensor '", name, "' in the store in '", dirs_[0], "'"));
}

TensorInfo TensorStore::info(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return find_locked(name)->info;
}

void TensorStore::define(const std::string& name, StoreDType dtype, std::vector<std::int64_t> shape,
                         TensorKind kind) {
  if (name.empty()) throw UsageError("tensor names must not be empty");
  std::uint64_t numel = 1;
  for (std::int64_t d : shape) {
    if (d < 0) throw UsageError(cat("tensor '", name, "' has a negative dimension"));
    numel *= static_cast<std::uint64_t>(d);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& t : tensors_)
    if (t->info.name == name)
      throw UsageError(cat("tensor '", name, "' already exists in the store"));
  auto tensor = std::make_shared<Tensor>();
  tensor->info = TensorInfo{name, dtype, std::move(shape), numel * store_dtype_size(dtype), 0};
  tensor->scratch = kind == TensorKind::kScratch;
  tensor->info.scratch = tensor->scratch;
  tensor->in_place = kind == TensorKind::kInPlace;
  tensor->info.in_place = tensor->in_place;
  const std::size_t n_dirs = dirs_.size();
  const std::uint64_t n_extents = (tensor->info.bytes + extent_bytes_ - 1) / extent_bytes_;
  tensor->first_dir = static_cast<unsigned>(tensors_.size() % n_dirs);  // spread small tensors
  std::vector<std::uint64_t> grow(n_dirs, 0);
  for (std::size_t d = 0; d < n_dirs; ++d) {
    const std::uint64_t local =
        (n_extents + n_dirs - (d + n_dirs - tensor->first_dir) % n_dirs - 1) / n_dirs;
    tensor->base.push_back(file_bytes_[d]);
    grow[d] = local * tensor->slots_per_extent() * extent_bytes_;
  }
  for (std::size_t d = 0; d < n_dirs; ++d) engine_->allocate(files_[d], file_bytes_[d], grow[d]);
  for (std::size_t d = 0; d < n_dirs; ++d) file_bytes_[d] += grow[d];
  tensor->slot.assign(n_extents, 0);
  tensor->committed_slot.assign(n_extents, 0);
  const std::uint32_t full = n_extents > 1 ? zero_crc(extent_bytes_) : 0;
  for (std::uint64_t k = 0; k < n_extents; ++k) {
    const std::uint64_t len = std::min(extent_bytes_, tensor->info.bytes - k * extent_bytes_);
    tensor->crc.push_back(len == extent_bytes_ && n_extents > 1 ? full : zero_crc(len));
  }
  tensor->dirty = true;
  tensors_.push_back(std::move(tensor));
  staged_ = true;
}

namespace {

// Where extent k of a tensor is, in slot `slot` of its `slots` per extent.
ExtentPlace place_extent(const std::vector<std::uint64_t>& base, unsigned first_dir,
                         std::uint64_t slots, std::size_t n_dirs, std::uint64_t extent_bytes,
                         std::uint64_t tensor_bytes, std::uint64_t k, unsigned slot) {
  const unsigned dir = static_cast<unsigned>((first_dir + k) % n_dirs);
  const std::uint64_t local = k / n_dirs;
  return ExtentPlace{dir, base[dir] + (local * slots + slot) * extent_bytes, k * extent_bytes,
                     std::min(extent_bytes, tensor_bytes - k * extent_bytes)};
}

void check_range(const TensorInfo& info, std::uint64_t offset, std::uint64_t& bytes) {
  if (bytes == TensorStore::kWhole) bytes = offset <= info.bytes ? info.bytes - offset : 0;
  if (offset > info.bytes || bytes > info.bytes - offset) {
    throw UsageError(cat("range [", offset, ", ", offset + bytes, ") is outside tensor '",
                         info.name, "' of ", info.bytes, " bytes"));
  }
}

}  // namespace

std::shared_future<void> TensorStore::write(const std::string& name, const void* src,
                                            std::uint64_t offset, std::uint64_t bytes) {
  auto pending = std::make_shared<Pending>();
  std::vector<io::IoRequest> requests;
  std::vector<io::IoRequest> rmw_reads;  // current content of partly written extents
  struct Patch {
    io::AlignedBuffer* buffer;
    std::uint64_t in_extent;  // where the new bytes go in the extent
    const std::byte* from;
    std::uint64_t bytes;
    std::uint64_t extent_bytes;
    std::uint32_t* crc;
  };
  std::vector<Patch> patches;
  const auto* data = static_cast<const std::byte*>(src);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::shared_ptr<Tensor> tensor = find_locked(name);
    check_range(tensor->info, offset, bytes);
    if (bytes == 0) return pending->done = std::async(std::launch::deferred, [] {}).share();
    const std::uint64_t first = offset / extent_bytes_;
    const std::uint64_t last = (offset + bytes - 1) / extent_bytes_;
    pending->buffers.reserve(static_cast<std::size_t>(last - first + 1) * 2);
    for (std::uint64_t k = first; k <= last; ++k) {
      const std::uint8_t current = tensor->slot[k];
      // Copy-on-write: the slot the last commit does not reference; one slot: in place.
      const std::uint8_t target = tensor->one_slot()                     ? 0
                                  : current == tensor->committed_slot[k] ? 1 - current
                                                                         : current;
      const ExtentPlace from =
          place_extent(tensor->base, tensor->first_dir, tensor->slots_per_extent(), dirs_.size(),
                       extent_bytes_, tensor->info.bytes, k, current);
      const ExtentPlace to =
          place_extent(tensor->base, tensor->first_dir, tensor->slots_per_extent(), dirs_.size(),
                       extent_bytes_, tensor->info.bytes, k, target);
      const io::FileId file = files_[to.dir];
      const std::uint64_t lo = std::max(offset, to.begin);
      const std::uint64_t hi = std::min(offset + bytes, to.begin + to.bytes);
      const std::byte* piece = data + (lo - offset);
      tensor->slot[k] = target;
      if (lo == to.begin && hi == to.begin + to.bytes && (aligned_ptr(piece) || !direct_[to.dir])) {
        // Whole extent straight from the caller's buffer; a tail under 4096 B goes via a bounce.
        tensor->crc[k] = crc32c(piece, to.bytes);
        const std::uint64_t body = direct_[to.dir] ? align_down(to.bytes) : to.bytes;
        if (body > 0)
          requests.push_back(
              {io::IoOp::kWrite, file, to.offset, const_cast<std::byte*>(piece), body});
        if (body < to.bytes) {
          io::AlignedBuffer& tail = pending->buffers.emplace_back(io::kIoAlignment, /*pin=*/false);
          std::memcpy(tail.data(), piece + body, to.bytes - body);
          requests.push_back({io::IoOp::kWrite, file, to.offset + body, tail.data(), tail.size()});
        }
        continue;
      }
      // Partly covered (or unaligned source): read-modify-write through a bounce buffer.
      io::AlignedBuffer& bounce = pending->buffers.emplace_back(to.bytes, /*pin=*/false);
      const std::size_t io_bytes = direct_[to.dir] ? bounce.size() : to.bytes;
      if (lo != to.begin || hi != to.begin + to.bytes) {
        rmw_reads.push_back(
            {io::IoOp::kRead, files_[from.dir], from.offset, bounce.data(), io_bytes});
      }
      patches.push_back({&bounce, lo - to.begin, piece, hi - lo, to.bytes, &tensor->crc[k]});
      requests.push_back({io::IoOp::kWrite, file, to.offset, bounce.data(), io_bytes});
    }
    tensor->dirty = true;
    staged_ = true;
    try {
      if (!rmw_reads.empty()) engine_->run(std::move(rmw_reads));  // under the lock: rare, small
      for (const Patch& p : patches) {
        std::memcpy(p.buffer->data() + p.in_extent, p.from, p.bytes);
        *p.crc = crc32c(p.buffer->data(), p.extent_bytes);
      }
      pending->done = engine_->submit(std::move(requests)).share();
    } catch (...) {
      if (!failed_write_) failed_write_ = std::current_exception();
      throw;
    }
    pending_.push_back(pending);
  }
  return pending->done;
}

std::shared_future<void> TensorStore::read(const std::string& name, void* dst, std::uint64_t offset,
                                           std::uint64_t bytes, bool verify) {
  std::vector<io::IoRequest> direct_reads;
  std::vector<io::IoRequest> bounce_reads;
  struct Copy {
    io::AlignedBuffer buffer;
    std::uint64_t skip;  // bytes of the buffer before the wanted range
    std::byte* to;
    std::uint64_t bytes;
  };
  std::vector<Copy> copies;
  struct Check {
    std::uint64_t k;
    ExtentPlace place;
    std::uint32_t crc;
  };
  std::vector<Check> checks;
  auto* out = static_cast<std::byte*>(dst);
  std::string tensor_name;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::shared_ptr<Tensor> tensor = find_locked(name);
    check_range(tensor->info, offset, bytes);
    if (bytes == 0) return std::async(std::launch::deferred, [] {}).share();
    const std::uint64_t first = offset / extent_bytes_;
    const std::uint64_t last = (offset + bytes - 1) / extent_bytes_;
    copies.reserve(static_cast<std::size_t>(last - first + 1) * 2);
    for (std::uint64_t k = first; k <= last; ++k) {
      const ExtentPlace at =
          place_extent(tensor->base, tensor->first_dir, tensor->slots_per_extent(), dirs_.size(),
                       extent_bytes_, tensor->info.bytes, k, tensor->slot[k]);
      if (verify) checks.push_back({k, at, tensor->crc[k]});
      const io::FileId file = files_[at.dir];
      const std::uint64_t lo = std::max(offset, at.begin) - at.begin;  // within the extent
      const std::uint64_t hi = std::min(offset + bytes, at.begin + at.bytes) - at.begin;
      std::byte* piece = out + (at.begin + lo - offset);
      if (!direct_[at.dir]) {
        direct_reads.push_back({io::IoOp::kRead, file, at.offset + lo, piece, hi - lo});
        continue;
      }
      std::uint64_t body = 0;
      if (lo % io::kIoAlignment == 0 && aligned_ptr(piece)) {
        body = align_down(hi - lo);
        if (body > 0) direct_reads.push_back({io::IoOp::kRead, file, at.offset + lo, piece, body});
      }
      if (lo + body < hi) {  // the unaligned rest through a bounce buffer
        const std::uint64_t span_lo = align_down(lo + body);
        const std::uint64_t span_hi = io::align_up(hi);
        Copy& c = copies.emplace_back(Copy{io::AlignedBuffer(span_hi - span_lo, /*pin=*/false),
                                           lo + body - span_lo, piece + body, hi - lo - body});
        bounce_reads.push_back(
            {io::IoOp::kRead, file, at.offset + span_lo, c.buffer.data(), c.buffer.size()});
      }
    }
    tensor_name = tensor->info.name;
  }
  std::shared_future<void> done = engine_->submit(std::move(direct_reads)).share();
  if (!bounce_reads.empty()) {
    engine_->run(std::move(bounce_reads));
    for (Copy& c : copies) std::memcpy(c.to, c.buffer.data() + c.skip, c.bytes);
  }
  if (!verify) return done;
  done.get();
  for (const Check& c : checks) {
    std::uint32_t crc = 0;
    if (c.place.begin >= offset && c.place.begin + c.place.bytes <= offset + bytes) {
      crc = crc32c(out + (c.place.begin - offset), c.place.bytes);
    } else {
      io::AlignedBuffer whole(c.place.bytes, /*pin=*/false);
      const unsigned dir = c.place.dir;
      engine_->run({{io::IoOp::kRead, files_[dir], c.place.offset, whole.data(),
                     direct_[dir] ? whole.size() : c.place.bytes}});
      crc = crc32c(whole.data(), c.place.bytes);
    }
    if (crc != c.crc) {
      throw RunError(
          cat("checksum mismatch in tensor '", tensor_name, "' extent ", c.k, " (bytes ",
              c.place.begin, "..", c.place.begin + c.place.bytes, " in '", dirs_[c.place.dir],
              "'): stored ", c.crc, ", read ", crc),
          "the data on disk is corrupt; run `sparsetrain fuyou store verify` on the store");
    }
  }
  return done;
}

void TensorStore::wait_pending(std::exception_ptr* first_error) {
  std::vector<std::shared_ptr<Pending>> pending;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending.swap(pending_);
  }
  for (const auto& p : pending) {
    try {
      p->done.get();
    } catch (...) {
      if (!*first_error) *first_error = std::current_exception();
    }
  }
}

void TensorStore::restore_committed() {
  std::lock_guard<std::mutex> lock(mutex_);
  load_manifest();
  failed_write_ = nullptr;
}

void TensorStore::rollback() {
  std::exception_ptr ignored;
  wait_pending(&ignored);
  restore_committed();
}

void TensorStore::commit() {
  std::exception_ptr error;
  wait_pending(&error);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error) error = failed_write_;
  }
  if (error) {
    restore_committed();
    std::rethrow_exception(error);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (!staged_) return;
  try {
    for (io::FileId f : files_) engine_->sync(f);
    ++version_;
    for (const auto& t : tensors_)
      if (t->dirty) t->info.version = version_;
    const std::string manifest = manifest_json();
    if (options_.keep_previous && !committed_manifest_.empty()) {
      common::write_file_atomic(dirs_[0] + "/" + kPreviousManifestName, committed_manifest_);
    }
    common::write_file_atomic(manifest_path(), manifest);
    committed_manifest_ = manifest;
  } catch (...) {
    load_manifest();  // back to the last commit
    throw;
  }
  for (const auto& t : tensors_) {
    t->committed_slot = t->slot;
    t->dirty = false;
  }
  staged_ = false;
}

void TensorStore::sync() {
  std::exception_ptr error;
  wait_pending(&error);
  std::lock_guard<std::mutex> lock(mutex_);
  if (error) {
    if (!failed_write_) failed_write_ = error;
    std::rethrow_exception(error);
  }
  for (io::FileId f : files_) engine_->sync(f);
}

void TensorStore::adopt_checksums(const std::string& name, std::uint64_t offset,
                                  std::uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::shared_ptr<Tensor> tensor = find_locked(name);
  if (!tensor->in_place) throw UsageError(cat("tensor '", name, "' is not in place"));
  check_range(tensor->info, offset, bytes);
  if (bytes == 0) return;
  io::AlignedBuffer buffer(extent_bytes_, /*pin=*/false);
  for (std::uint64_t k = offset / extent_bytes_; k <= (offset + bytes - 1) / extent_bytes_; ++k) {
    const ExtentPlace at =
        place_extent(tensor->base, tensor->first_dir, tensor->slots_per_extent(), dirs_.size(),
                     extent_bytes_, tensor->info.bytes, k, tensor->slot[k]);
    engine_->run({{io::IoOp::kRead, files_[at.dir], at.offset, buffer.data(),
                   direct_[at.dir] ? io::align_up(at.bytes) : at.bytes}});
    tensor->crc[k] = crc32c(buffer.data(), at.bytes);
  }
  tensor->dirty = true;
  staged_ = true;
}

VerifyReport TensorStore::verify() {
  std::exception_ptr ignored;
  wait_pending(&ignored);
  VerifyReport report;
  std::vector<std::shared_ptr<Tensor>> tensors;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    report.store_version = version_;
    tensors = tensors_;
  }
  constexpr std::size_t kBatch = 16;  // extents per engine batch
  std::vector<io::AlignedBuffer> buffers;
  for (std::size_t i = 0; i < kBatch; ++i) buffers.emplace_back(extent_bytes_, /*pin=*/false);
  for (const auto& t : tensors) {
    ++report.tensors;
    if (t->scratch) {  // written in place between commits: no committed bytes to check
      ++report.scratch_tensors;
      continue;
    }
    const std::uint64_t n = t->committed_slot.size();
    for (std::uint64_t k0 = 0; k0 < n; k0 += kBatch) {
      std::vector<io::IoRequest> reads;
      std::vector<ExtentPlace> places;
      for (std::uint64_t k = k0; k < std::min<std::uint64_t>(n, k0 + kBatch); ++k) {
        const ExtentPlace at =
            place_extent(t->base, t->first_dir, t->slots_per_extent(), dirs_.size(), extent_bytes_,
                         t->info.bytes, k, t->committed_slot[k]);
        places.push_back(at);
        io::AlignedBuffer& b = buffers[k - k0];
        reads.push_back({io::IoOp::kRead, files_[at.dir], at.offset, b.data(),
                         direct_[at.dir] ? io::align_up(at.bytes) : at.bytes});
      }
      try {
        engine_->run(std::move(reads));
      } catch (const io::IoError& e) {
        report.problems.push_back(cat("tensor '", t->info.name, "': ", e.what()));
        break;
      }
      for (std::size_t j = 0; j < places.size(); ++j) {
        const std::uint64_t k = k0 + j;
        const std::uint32_t crc = crc32c(buffers[j].data(), places[j].bytes);
        ++report.extents;
        report.bytes += places[j].bytes;
        if (crc != t->crc[k]) {
          report.problems.push_back(
              cat("tensor '", t->info.name, "' extent ", k, " (bytes ", places[j].begin, "..",
                  places[j].begin + places[j].bytes, ", in '", dirs_[places[j].dir],
                  "'): checksum mismatch (manifest ", t->crc[k], ", data ", crc, ")",
                  t->in_place ? "; an in-place tensor: written since the last commit by a "
                                "writer that stopped mid-update?"
                              : ""));
        }
      }
    }
  }
  return report;
}

}  // namespace sparsetrain::fuyou
