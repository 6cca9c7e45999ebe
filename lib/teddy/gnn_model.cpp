// Shared GNN pieces: the model factory and message passing over GraphTensors (see gnn_model.h).
#include "teddy/gnn_model.h"

#include <torch/torch.h>

#include "common/error.h"
#include "teddy/gat.h"
#include "teddy/gcn.h"
#include "teddy/gin.h"

namespace sparsetrain::teddy {

std::vector<std::string> gnn_model_names() { return {"gcn", "gat", "gin"}; }

std::shared_ptr<GnnModelImpl> make_gnn_model(const std::string& name, std::int64_t in_features,
                                             std::int64_t classes, const GnnOptions& o) {
  if (name == "gcn") {
    return std::make_shared<GcnImpl>(in_features, classes, o.hidden > 0 ? o.hidden : 512,
                                     o.dropout >= 0 ? o.dropout : 0.5);
  }
  if (name == "gat") {
    return std::make_shared<GatImpl>(in_features, classes, o.hidden > 0 ? o.hidden : 8, o.heads,
                                     o.dropout >= 0 ? o.dropout : 0.6, o.attention_dropout);
  }
  if (name == "gin") {
    return std::make_shared<GinImpl>(in_features, classes, o.hidden > 0 ? o.hidden : 512,
                                     o.dropout >= 0 ? o.dropout : 0.5);
  }
  throw common::UsageError("unknown model '" + name + "'", "choose gcn, gat or gin");
}

at::Tensor propagate(const GraphTensors& g, const at::Tensor& h, const at::Tensor& weight,
                     const at::Tensor& entries) {
  at::Tensor src = g.src, dst = g.dst, w = weight;
  if (entries.defined()) {
    src = src.index({entries});
    dst = dst.index({entries});
    if (w.defined()) w = w.index({entries});
  }
  at::Tensor msg = h.index_select(0, src);  // [E', ...]
  if (w.defined()) {
    std::vector<std::int64_t> shape(static_cast<std::size_t>(h.dim()), 1);
    shape[0] = w.size(0);
    msg = msg * w.view(shape);
  }
  return torch::zeros_like(h).index_add_(0, dst, msg);
}

at::Tensor masked_entry_weight(const GraphTensors& g, const at::Tensor& base,
                               const at::Tensor& edge_mask) {
  if (!edge_mask.defined()) return base;
  at::Tensor m = edge_mask.index_select(0, g.edge_id.clamp_min(0));  // [E']
  m = torch::where(g.added_loop, torch::ones_like(m), m);
  return base.defined() ? base * m : m;
}

at::Tensor sparse_dropout(const at::Tensor& x, double p, bool training) {
  if (!training || p <= 0) return x;
  at::Tensor values = x._values();
  at::Tensor keep = torch::bernoulli(torch::full_like(values, 1.0 - p));
  return torch::sparse_coo_tensor(x._indices(), values * keep / (1.0 - p), x.sizes())
      ._coalesced_(true);
}

double kept_entries(const GraphTensors& g, const at::Tensor& edge_mask, bool with_added_loops) {
  torch::NoGradGuard no_grad;
  at::Tensor use = with_added_loops ? torch::ones_like(g.added_loop) : ~g.added_loop;
  if (edge_mask.defined()) {
    at::Tensor m = edge_mask.index_select(0, g.edge_id.clamp_min(0)) != 0;
    use = use & (g.added_loop | m);
  }
  return static_cast<double>(use.sum().item<std::int64_t>());
}

double nonzeros(const at::Tensor& t) {
  return static_cast<double>((t != 0).sum().item<std::int64_t>());
}

}  // namespace sparsetrain::teddy
