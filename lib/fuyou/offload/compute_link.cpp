// The CPU and CUDA compute-tier links (see compute_link.h).
#include "fuyou/offload/compute_link.h"

#include <optional>

#include "fuyou/offload/offload_stats.h"

namespace sparsetrain::fuyou {

namespace {

class CpuLink final : public ComputeTierLink {
 public:
  void copy(const std::vector<at::Tensor>& src, std::vector<at::Tensor>& dst,
            const CudaMark&) override {
    for (std::size_t k = 0; k < src.size(); ++k) dst[k].copy_(src[k]);
  }
  bool fetch(std::vector<at::Tensor>&, const std::vector<TensorSpan>&, float*, const CudaMark&,
             common::PhaseTimes*) override {
    return false;
  }
  std::vector<at::Tensor> outputs(const UnitTensors& unit, const std::vector<TensorSpan>& spans,
                                  std::size_t, common::PhaseTimes&) override {
    std::vector<at::Tensor> outs;
    for (const TensorSpan& span : spans) {
      outs.push_back(flat_slice(*unit.compute[span.tensor], span.tensor_offset, span.floats));
    }
    return outs;
  }
  void publish(const UnitTensors&, const std::vector<TensorSpan>&, std::vector<at::Tensor>&,
               std::size_t) override {}
  // Nothing to wait for; the phase is still opened, so both tiers' records list the same phases.
  void finish_step(common::PhaseTimes& phases) override { auto t = phases.scope("upload_wait"); }
};

class CudaLink final : public ComputeTierLink {
 public:
  CudaLink(common::io::AlignedBuffer (&weight_slots)[2], OffloadStats& stats)
      : weight_slots_(weight_slots), stats_(stats) {}

  void copy(const std::vector<at::Tensor>& src, std::vector<at::Tensor>& dst,
            const CudaMark& ready) override {
    for (const at::Tensor& t : dst) stats_.pcie_d2h_bytes += segment_bytes(t.numel());
    transfer_.download(src, dst, ready);
  }
  bool fetch(std::vector<at::Tensor>& grads, const std::vector<TensorSpan>& spans, float* slot,
             const CudaMark& ready, common::PhaseTimes* phases) override {
    // Accumulated in CPU memory (offload_plan.h: outside_grads_in_cpu), synchronously: nothing to
    // download or wait for.
    if (!grads.empty() && !grads.front().is_cuda()) return false;
    std::vector<at::Tensor> gpu = std::move(grads);
    grads.clear();
    for (const TensorSpan& span : spans) {
      grads.push_back(float_span(slot + span.piece_offset, span.floats));
      stats_.pcie_d2h_bytes += segment_bytes(span.floats);
    }
    std::optional<common::PhaseTimes::Scope> timed;
    if (phases != nullptr) timed.emplace(*phases, "download");
    transfer_.download(gpu, grads, ready);
    return true;
  }
  std::vector<at::Tensor> outputs(const UnitTensors&, const std::vector<TensorSpan>& spans,
                                  std::size_t s, common::PhaseTimes& phases) override {
    {
      auto t = phases.scope("upload_wait");  // the slot's previous weights are on the GPU
      CudaTransfer::wait(uploads_[s % 2]);
    }
    std::vector<at::Tensor> outs;
    for (const TensorSpan& span : spans) {
      outs.push_back(
          bf16_span(weight_slots_[s % 2].data() + kBf16Bytes * span.piece_offset, span.floats));
    }
    return outs;
  }
  void publish(const UnitTensors& unit, const std::vector<TensorSpan>& spans,
               std::vector<at::Tensor>& outs, std::size_t s) override {
    std::vector<at::Tensor> gpu;
    for (const TensorSpan& span : spans) {
      gpu.push_back(flat_slice(*unit.compute[span.tensor], span.tensor_offset, span.floats));
      stats_.pcie_h2d_bytes += kBf16Bytes * static_cast<std::uint64_t>(span.floats);
    }
    uploads_[s % 2] = transfer_.upload(outs, gpu);
  }
  void finish_step(common::PhaseTimes& phases) override {
    auto t = phases.scope("upload_wait");
    for (CudaMark& mark : uploads_) {
      CudaTransfer::wait(mark);
      mark.reset();
    }
  }

 private:
  CudaTransfer transfer_;  // the optimizer thread's copy stream
  CudaMark uploads_[2];    // the last upload out of each weight slot
  common::io::AlignedBuffer (&weight_slots_)[2];
  OffloadStats& stats_;
};

}  // namespace

std::unique_ptr<ComputeTierLink> make_cpu_link() { return std::make_unique<CpuLink>(); }

std::unique_ptr<ComputeTierLink> make_cuda_link(common::io::AlignedBuffer (&weight_slots)[2],
                                                OffloadStats& stats) {
  return std::make_unique<CudaLink>(weight_slots, stats);
}

}  // namespace sparsetrain::fuyou
