// KeptActivations and its three shelves, one per tier (see kept_activations.h).
#include "fuyou/offload/kept_activations.h"

#include <ATen/ops/from_blob.h>

#include <utility>

#include "common/error.h"
#include "common/io/aligned_buffer.h"
#include "fuyou/offload/cuda_transfer.h"
#include "fuyou/offload/input_stash.h"
#include "fuyou/offload/offload_stats.h"
#include "fuyou/offload/offload_units.h"
#include "fuyou/store/tensor_store.h"

namespace sparsetrain::fuyou {

class KeptActivations::Shelf {
 public:
  virtual ~Shelf() = default;
  virtual void push(std::int64_t l, BlockActivations kept) = 0;
  virtual BlockActivations pop(std::int64_t l) = 0;
  virtual void end_pass() {}
  virtual void add_stats(OffloadStats&) const {}
};

namespace {

// A block's kept tensors in activation order (what a flat copy holds, one after the other).
std::vector<at::Tensor> parts_of(const BlockActivations& kept) {
  std::vector<at::Tensor> parts;
  for (const auto& tensors : kept.tensors)
    parts.insert(parts.end(), tensors.begin(), tensors.end());
  return parts;
}

// Floats from one kept tensor's start to the next's (block_activations.h: kActivationAlignCpu).
constexpr std::int64_t kAlignFloats = static_cast<std::int64_t>(kActivationAlignCpu / 4);
std::int64_t aligned_floats(std::int64_t numel) {
  return (numel + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
}

// Views of a flat fp32 copy (activation_set_bytes' layout) as `set`'s tensors.
BlockActivations views_of(const ModelConfig& config, std::int64_t batch, std::int64_t seq,
                          ActivationSet set, const at::Tensor& flat) {
  BlockActivations kept{set, {}};
  std::int64_t at = 0;
  for (int a = 0; a < kBlockActivations; ++a) {
    if (!set.has(a)) continue;
    for (const auto& shape : activation_shapes(config, a, batch, seq, /*cuda=*/false)) {
      std::int64_t numel = 1;
      for (std::int64_t d : shape) numel *= d;
      kept.tensors[a].push_back(flat.slice(0, at, at + numel).view(shape));
      at += aligned_floats(numel);
    }
  }
  ST_ASSERT(at == flat.numel(), "kept activations of another size");
  return kept;
}

// Floats of `set`'s tensors for a micro-batch as the CPU tier lays them out.
std::int64_t floats_of(const ModelConfig& config, std::int64_t batch, std::int64_t seq,
                       ActivationSet set) {
  return static_cast<std::int64_t>(activation_set_bytes(config, set, batch, seq, /*cuda=*/false) /
                                   4);
}

// A block's tensors back in `set`'s order (activation_shapes' counts per activation).
BlockActivations regrouped(const ModelConfig& config, std::int64_t batch, std::int64_t seq,
                           ActivationSet set, bool cuda, std::vector<at::Tensor> flat) {
  BlockActivations kept{set, {}};
  std::size_t at = 0;
  for (int a = 0; a < kBlockActivations; ++a) {
    if (!set.has(a)) continue;
    for (std::size_t i = 0; i < activation_shapes(config, a, batch, seq, cuda).size(); ++i) {
      ST_ASSERT(at < flat.size(), "kept activations came back short");
      kept.tensors[a].push_back(std::move(flat[at++]));
    }
  }
  ST_ASSERT(at == flat.size(), "kept activations came back long");
  return kept;
}

// Block l's store tensor for `floats`: one this store has of at least that size (a resumed run
// that keeps less), else a new one. Rewritten every micro-batch before it is read: scratch.
std::string store_tensor_for(TensorStore& store, std::int64_t l, std::int64_t floats) {
  const std::string prefix = activation_store_name(l, 0).substr(
      0, activation_store_name(l, 0).size() - 1);  // "activations.<l>."
  for (const TensorInfo& info : store.tensors()) {
    if (info.name.rfind(prefix, 0) == 0 && info.bytes >= 4 * static_cast<std::uint64_t>(floats))
      return info.name;
  }
  const std::string name = activation_store_name(l, floats);
  store.define(name, StoreDType::kF32, {floats}, TensorKind::kScratch);
  return name;
}

class ComputeShelf final : public KeptActivations::Shelf {
 public:
  explicit ComputeShelf(std::int64_t layers) : kept_(static_cast<std::size_t>(layers)) {}
  void push(std::int64_t l, BlockActivations kept) override {
    kept_[static_cast<std::size_t>(l)] = std::move(kept);
  }
  BlockActivations pop(std::int64_t l) override {
    return std::move(kept_[static_cast<std::size_t>(l)]);  // freed as the backward goes
  }

 private:
  std::vector<BlockActivations> kept_;
};

class CpuShelf final : public KeptActivations::Shelf {
 public:
  CpuShelf(const ModelConfig& config, std::int64_t batch, std::int64_t seq,
           const std::vector<ActivationSet>& kept, const std::vector<ActivationTier>& tiers)
      : config_(config), batch_(batch), seq_(seq), kept_(kept) {
    buffers_.resize(kept.size());
    floats_.assign(kept.size(), 0);
    for (std::size_t l = 0; l < kept.size(); ++l) {
      if (tiers[l] != ActivationTier::kCpu || kept[l].empty()) continue;
      floats_[l] = floats_of(config, batch, seq, kept[l]);
      buffers_[l] =
          common::io::AlignedBuffer(4 * static_cast<std::size_t>(floats_[l]), /*pin=*/false);
    }
  }
  void push(std::int64_t l, BlockActivations kept) override {
    const at::Tensor flat = view(l);
    std::int64_t at = 0;
    for (const at::Tensor& t : parts_of(kept)) {
      flat.slice(0, at, at + t.numel()).view(t.sizes()).copy_(t);
      at += aligned_floats(t.numel());
    }
    bytes_in_ += 4 * static_cast<std::uint64_t>(flat.numel());
  }
  BlockActivations pop(std::int64_t l) override {
    const at::Tensor flat = view(l);
    bytes_out_ += 4 * static_cast<std::uint64_t>(flat.numel());
    return views_of(config_, batch_, seq_, kept_[static_cast<std::size_t>(l)], flat);
  }
  void add_stats(OffloadStats& stats) const override {
    stats.activation_bytes_to_cpu = bytes_in_;
    stats.activation_bytes_from_cpu = bytes_out_;
  }

 private:
  at::Tensor view(std::int64_t l) {
    const auto i = static_cast<std::size_t>(l);
    return at::from_blob(buffers_[i].data(), {floats_[i]}, at::TensorOptions().dtype(at::kFloat));
  }
  const ModelConfig config_;
  const std::int64_t batch_, seq_;
  const std::vector<ActivationSet> kept_;
  std::vector<common::io::AlignedBuffer> buffers_;  // block l's set's floats, or none
  std::vector<std::int64_t> floats_;
  std::uint64_t bytes_in_ = 0, bytes_out_ = 0;
};

class StoreShelf final : public KeptActivations::Shelf {
 public:
  StoreShelf(const ModelConfig& config, std::int64_t batch, std::int64_t seq,
             const std::vector<ActivationSet>& kept, const std::vector<ActivationTier>& tiers,
             TensorStore& store)
      : config_(config), batch_(batch), seq_(seq), kept_(kept) {
    index_.assign(kept.size(), -1);
    std::vector<std::int64_t> floats;
    for (std::size_t l = 0; l < kept.size(); ++l) {
      if (tiers[l] != ActivationTier::kStore || kept[l].empty()) continue;
      index_[l] = static_cast<std::int64_t>(blocks_.size());
      blocks_.push_back(static_cast<std::int64_t>(l));
      floats.push_back(floats_of(config, batch, seq, kept[l]));
      names_.push_back(store_tensor_for(store, static_cast<std::int64_t>(l), floats.back()));
    }
    ST_ASSERT(!blocks_.empty(), "a store shelf without a block");
    auto bytes = [floats](std::int64_t j) {
      return segment_bytes(floats[static_cast<std::size_t>(j)]);
    };
    stash_ = std::make_unique<InputStash>(
        floats, /*slots=*/2,
        [this, &store, bytes](std::int64_t j, const float* src) {
          store.write(names_[static_cast<std::size_t>(j)], src, 0, bytes(j)).get();
        },
        [this, &store, bytes](std::int64_t j, float* dst) {
          store.read(names_[static_cast<std::size_t>(j)], dst, 0, bytes(j)).get();
        });
  }
  void push(std::int64_t l, BlockActivations kept) override {
    stash_->push(index_[static_cast<std::size_t>(l)], parts_of(kept));
  }
  BlockActivations pop(std::int64_t l) override {
    return views_of(config_, batch_, seq_, kept_[static_cast<std::size_t>(l)],
                    stash_->pop(index_[static_cast<std::size_t>(l)]));
  }
  void end_pass() override { stash_->end_pass(); }
  void add_stats(OffloadStats& stats) const override {
    stats.activation_bytes_written = stash_->bytes_written();
    stats.activation_bytes_read = stash_->bytes_read();
    stats.ssd_write_bytes += stats.activation_bytes_written;
    stats.ssd_read_bytes += stats.activation_bytes_read;
  }

 private:
  const ModelConfig config_;
  const std::int64_t batch_, seq_;
  const std::vector<ActivationSet> kept_;
  std::vector<std::int64_t> index_;    // block -> the stash's layer, -1 off this shelf
  std::vector<std::int64_t> blocks_;   // the stash's layers' blocks, increasing
  std::vector<std::string> names_;     // their store tensors
  std::unique_ptr<InputStash> stash_;  // last: its thread uses the members above
};

// CUDA: pinned CPU memory over PCIe, and the store behind pinned staging buffers
// (cuda_transfer.h: CudaActivationStash); one shelf for both tiers, their blocks coming back
// through the same two GPU slots.
class CudaShelf final : public KeptActivations::Shelf {
 public:
  CudaShelf(const ModelConfig& config, std::int64_t batch, std::int64_t seq,
            const std::vector<ActivationSet>& kept, const std::vector<ActivationTier>& tiers,
            TensorStore* store)
      : config_(config), batch_(batch), seq_(seq), kept_(kept) {
    std::vector<std::uint64_t> bytes(kept.size(), 0);
    ActivationStoreIo io;
    io.in_store.assign(kept.size(), false);
    names_.resize(kept.size());
    bool stores = false;
    for (std::size_t l = 0; l < kept.size(); ++l) {
      if (tiers[l] == ActivationTier::kCompute || kept[l].empty()) continue;
      bytes[l] = activation_set_bytes(config, kept[l], batch, seq, /*cuda=*/true);
      if (tiers[l] != ActivationTier::kStore) continue;
      ST_ASSERT(store, "kept activations in the store need one");
      io.in_store[l] = stores = true;
      names_[l] = store_tensor_for(*store, static_cast<std::int64_t>(l),
                                   static_cast<std::int64_t>(bytes[l] / 4));
    }
    if (stores) {
      io.write = [this, store](std::int64_t l, const void* src, std::uint64_t n) {
        store->write(names_[static_cast<std::size_t>(l)], src, 0, n).get();
      };
      io.read = [this, store](std::int64_t l, void* dst, std::uint64_t n) {
        store->read(names_[static_cast<std::size_t>(l)], dst, 0, n).get();
      };
    }
    stash_ = std::make_unique<CudaActivationStash>(std::move(bytes), std::move(io));
  }
  void push(std::int64_t l, BlockActivations kept) override { stash_->push(l, parts_of(kept)); }
  BlockActivations pop(std::int64_t l) override {
    return regrouped(config_, batch_, seq_, kept_[static_cast<std::size_t>(l)], /*cuda=*/true,
                     stash_->pop(l));
  }
  void end_pass() override { stash_->end_pass(); }
  void add_stats(OffloadStats& stats) const override {
    // Either tier's blocks cross PCIe into CPU memory; the store's then go to the SSD.
    stats.activation_bytes_to_cpu = stash_->bytes_down();
    stats.activation_bytes_from_cpu = stash_->bytes_up();
    stats.pcie_d2h_bytes += stats.activation_bytes_to_cpu;
    stats.pcie_h2d_bytes += stats.activation_bytes_from_cpu;
    stats.activation_bytes_written = stash_->bytes_written();
    stats.activation_bytes_read = stash_->bytes_read();
    stats.ssd_write_bytes += stats.activation_bytes_written;
    stats.ssd_read_bytes += stats.activation_bytes_read;
  }

 private:
  const ModelConfig config_;
  const std::int64_t batch_, seq_;
  const std::vector<ActivationSet> kept_;
  std::vector<std::string> names_;              // per block: its store tensor, or none
  std::unique_ptr<CudaActivationStash> stash_;  // last: its I/O thread uses names_
};

}  // namespace

KeptActivations::KeptActivations(const ModelConfig& config, std::int64_t batch, std::int64_t seq,
                                 bool cuda, std::vector<ActivationSet> kept,
                                 std::vector<ActivationTier> tiers, TensorStore* store)
    : config_(config),
      batch_(batch),
      seq_(seq),
      cuda_(cuda),
      kept_(std::move(kept)),
      tiers_(std::move(tiers)) {
  ST_ASSERT(
      kept_.size() == tiers_.size() && static_cast<std::int64_t>(kept_.size()) == config_.n_layer,
      "kept activations need a set and a tier per block");
  bool uses[3] = {false, false, false};
  for (std::size_t l = 0; l < kept_.size(); ++l) {
    if (!kept_[l].empty()) uses[static_cast<int>(tiers_[l])] = true;
  }
  shelves_.push_back(std::make_unique<ComputeShelf>(config_.n_layer));
  by_tier_ = {shelves_.back().get(), nullptr, nullptr};
  if (cuda_ && (uses[1] || uses[2])) {
    shelves_.push_back(std::make_unique<CudaShelf>(config_, batch_, seq_, kept_, tiers_, store));
    by_tier_[1] = by_tier_[2] = shelves_.back().get();
    return;
  }
  if (uses[1]) {
    shelves_.push_back(std::make_unique<CpuShelf>(config_, batch_, seq_, kept_, tiers_));
    by_tier_[1] = shelves_.back().get();
  }
  if (uses[2]) {
    ST_ASSERT(store, "kept activations in the store need one");
    shelves_.push_back(std::make_unique<StoreShelf>(config_, batch_, seq_, kept_, tiers_, *store));
    by_tier_[2] = shelves_.back().get();
  }
}

KeptActivations::~KeptActivations() = default;

void KeptActivations::push(std::int64_t l, BlockActivations kept) {
  const auto i = static_cast<std::size_t>(l);
  ST_ASSERT(kept.set == kept_[i], "block " + std::to_string(l) + " kept another set");
  if (kept_[i].empty()) return;
  by_tier_[static_cast<std::size_t>(tiers_[i])]->push(l, std::move(kept));
}

const BlockActivations& KeptActivations::pop(std::int64_t l) {
  const auto i = static_cast<std::size_t>(l);
  popped_ =
      kept_[i].empty() ? BlockActivations{} : by_tier_[static_cast<std::size_t>(tiers_[i])]->pop(l);
  return popped_;
}

void KeptActivations::end_pass() {
  popped_ = BlockActivations{};
  for (auto& shelf : shelves_) shelf->end_pass();
}

void KeptActivations::add_stats(OffloadStats& stats) const {
  for (const auto& shelf : shelves_) shelf->add_stats(stats);
}

}  // namespace sparsetrain::fuyou
