// The three block-input placements (see block_inputs.h).
#include "fuyou/offload/block_inputs.h"

#include <utility>
#include <vector>

#include "fuyou/offload/cuda_transfer.h"
#include "fuyou/offload/input_stash.h"
#include "fuyou/offload/offload_stats.h"
#include "fuyou/offload/offload_units.h"
#include "fuyou/store/tensor_store.h"

namespace sparsetrain::fuyou {

namespace {

class InputsInComputeTier final : public BlockInputs {
 public:
  void push(std::int64_t layer, const at::Tensor& input) override {
    if (layer == 0) kept_.clear();  // a new pass, also after one that an error cut short
    ST_ASSERT(layer == static_cast<std::int64_t>(kept_.size()), "block inputs out of order");
    kept_.push_back(input);
  }
  at::Tensor pop(std::int64_t layer) override {
    return std::move(kept_[static_cast<std::size_t>(layer)]);  // freed as the backward goes
  }
  void end_pass() override { kept_.clear(); }
  void add_stats(OffloadStats&) const override {}

 private:
  std::vector<at::Tensor> kept_;  // kept_[l]: block l's input [B, T, C]
};

class InputsInStore final : public BlockInputs {
 public:
  InputsInStore(TensorStore& store, std::int64_t layers, std::int64_t batch, std::int64_t seq,
                std::int64_t hidden)
      : shape_{batch, seq, hidden},
        stash_(
            std::vector<std::int64_t>(static_cast<std::size_t>(layers), batch * seq * hidden),
            /*slots=*/2,
            [&store, bytes = bytes_of(batch, seq, hidden)](std::int64_t layer, const float* src) {
              store.write(input_store_name(layer), src, 0, bytes).get();
            },
            [&store, bytes = bytes_of(batch, seq, hidden)](std::int64_t layer, float* dst) {
              store.read(input_store_name(layer), dst, 0, bytes).get();
            }) {}
  void push(std::int64_t layer, const at::Tensor& input) override { stash_.push(layer, {input}); }
  at::Tensor pop(std::int64_t layer) override { return stash_.pop(layer).view(shape_); }
  void end_pass() override { stash_.end_pass(); }
  void add_stats(OffloadStats& stats) const override {
    stats.input_bytes_written = stash_.bytes_written();
    stats.input_bytes_read = stash_.bytes_read();
    stats.ssd_write_bytes += stats.input_bytes_written;
    stats.ssd_read_bytes += stats.input_bytes_read;
  }

 private:
  static std::uint64_t bytes_of(std::int64_t batch, std::int64_t seq, std::int64_t hidden) {
    return segment_bytes(batch * seq * hidden);
  }
  const std::vector<std::int64_t> shape_;  // [B, T, C]
  InputStash stash_;
};

class InputsInPinnedCpu final : public BlockInputs {
 public:
  InputsInPinnedCpu(std::int64_t layers, std::int64_t batch, std::int64_t seq, std::int64_t hidden)
      : stash_(layers, {batch, seq, hidden}) {}
  void push(std::int64_t layer, const at::Tensor& input) override { stash_.push(layer, input); }
  at::Tensor pop(std::int64_t layer) override { return stash_.pop(layer); }
  void end_pass() override { stash_.end_pass(); }
  void add_stats(OffloadStats& stats) const override {  // over PCIe, not the store
    stats.input_bytes_written = stash_.bytes_down();
    stats.input_bytes_read = stash_.bytes_up();
    stats.pcie_d2h_bytes += stats.input_bytes_written;
    stats.pcie_h2d_bytes += stats.input_bytes_read;
  }

 private:
  CudaInputStash stash_;
};

}  // namespace

std::unique_ptr<BlockInputs> make_inputs_in_compute_tier() {
  return std::make_unique<InputsInComputeTier>();
}

std::unique_ptr<BlockInputs> make_inputs_in_store(TensorStore& store, std::int64_t layers,
                                                  std::int64_t batch, std::int64_t seq,
                                                  std::int64_t hidden) {
  for (std::int64_t l = 0; l < layers; ++l) {
    if (!store.contains(input_store_name(l))) {
      // Rewritten every micro-batch before it is read: scratch (in place, one slot per extent).
      store.define(input_store_name(l), StoreDType::kF32, {batch * seq * hidden},
                   TensorKind::kScratch);
    }
  }
  return std::make_unique<InputsInStore>(store, layers, batch, seq, hidden);
}

std::unique_ptr<BlockInputs> make_inputs_in_pinned_cpu(std::int64_t layers, std::int64_t batch,
                                                       std::int64_t seq, std::int64_t hidden) {
  return std::make_unique<InputsInPinnedCpu>(layers, batch, seq, hidden);
}

}  // namespace sparsetrain::fuyou
