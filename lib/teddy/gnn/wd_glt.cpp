// WD-GLT's mask-search objective (see wd_glt.h).
#include "teddy/gnn/wd_glt.h"

#include <torch/torch.h>

namespace sparsetrain::teddy {

namespace {

class WassersteinMaskObjective : public MaskSearchObjective {
 public:
  explicit WassersteinMaskObjective(const WdGltOptions& options) : options_(options) {}
  at::Tensor loss(const at::Tensor& logits, const at::Tensor& /*edge_mask*/,
                  const std::vector<at::Tensor>& /*weight_masks*/) const override {
    return options_.lambda * class_separation_loss(logits, options_.sinkhorn);
  }
  void after_step(at::Tensor& edge_mask) const override { edge_mask.clamp_(0.0, 1.0); }

 private:
  WdGltOptions options_;
};

}  // namespace

std::shared_ptr<const MaskSearchObjective> wasserstein_mask_objective(const WdGltOptions& options) {
  return std::make_shared<WassersteinMaskObjective>(options);
}

at::Tensor class_separation_loss(const at::Tensor& logits, const SinkhornOptions& options) {
  const std::int64_t n = logits.size(0), classes = logits.size(1);
  const at::Tensor probs = torch::softmax(logits, 1);  // [N, classes]
  const at::Tensor predicted = logits.argmax(1);       // [N], no gradient
  at::Tensor total = torch::zeros({}, logits.options());
  for (std::int64_t c = 0; c < classes; ++c) {
    const at::Tensor in_c = predicted.eq(c);
    const std::int64_t count = in_c.sum().item<std::int64_t>();
    if (count == 0 || count == n) continue;
    const at::Tensor inside = torch::nonzero(in_c).squeeze(1);
    const at::Tensor outside = torch::nonzero(~in_c).squeeze(1);
    total = total - sinkhorn_distance(probs.index_select(0, inside), probs.index_select(0, outside),
                                      options);
  }
  return total;
}

}  // namespace sparsetrain::teddy
