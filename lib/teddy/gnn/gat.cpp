// GAT forward pass and MACs (see gat.h).
#include "teddy/gnn/gat.h"

#include <torch/torch.h>

#include <limits>

namespace sparsetrain::teddy {

GatImpl::GatImpl(std::int64_t in_features, std::int64_t classes, std::int64_t hidden,
                 std::int64_t heads, double dropout, double attention_dropout)
    : hidden_(hidden),
      heads_(heads),
      classes_(classes),
      dropout_(dropout),
      attention_dropout_(attention_dropout) {
  namespace init = torch::nn::init;
  w1_ =
      register_parameter("w1", init::xavier_uniform_(torch::empty({in_features, heads * hidden})));
  a1_src_ = register_parameter("a1_src", init::xavier_uniform_(torch::empty({heads, hidden})));
  a1_dst_ = register_parameter("a1_dst", init::xavier_uniform_(torch::empty({heads, hidden})));
  w2_ = register_parameter("w2", init::xavier_uniform_(torch::empty({heads * hidden, classes})));
  a2_src_ = register_parameter("a2_src", init::xavier_uniform_(torch::empty({1, classes})));
  a2_dst_ = register_parameter("a2_dst", init::xavier_uniform_(torch::empty({1, classes})));
}

at::Tensor GatImpl::attend(const GraphTensors& g, const at::Tensor& x, const at::Tensor& w,
                           const at::Tensor& a_src, const at::Tensor& a_dst, std::int64_t heads,
                           const at::Tensor& edge_mask) {
  const std::int64_t n = g.num_nodes;
  at::Tensor h = (x.defined() ? torch::mm(x, w) : feature_matmul(g, w, dropout_, is_training()))
                     .view({n, heads, -1});  // [N, H, C]
  // Attention scores and the softmax use index_select/index_add on [E', H] only (H small).
  at::Tensor s_src = (h * a_src.unsqueeze(0)).sum(-1);  // [N, H]
  at::Tensor s_dst = (h * a_dst.unsqueeze(0)).sum(-1);  // [N, H]
  at::Tensor e = torch::leaky_relu(s_src.index_select(0, g.src) + s_dst.index_select(0, g.dst),
                                   0.2);  // [E', H]
  // Softmax over the entries of each destination; the max shift needs no gradient.
  at::Tensor shift;
  {
    torch::NoGradGuard no_grad;
    shift = torch::full({n, heads}, -std::numeric_limits<double>::infinity(), e.options())
                .scatter_reduce(0, g.dst.unsqueeze(1).expand({-1, heads}), e, "amax");
  }
  at::Tensor ex = torch::exp(e - shift.index_select(0, g.dst));  // [E', H]
  at::Tensor denom = torch::zeros({n, heads}, e.options()).index_add(0, g.dst, ex);
  at::Tensor alpha = ex / denom.index_select(0, g.dst);  // [E', H]
  if (edge_mask.defined()) alpha = alpha * masked_entry_weight(g, {}, edge_mask).unsqueeze(1);
  alpha = fast_dropout(alpha, attention_dropout_, is_training());
  return propagate(g, h, alpha);  // [N, H, C]
}

at::Tensor GatImpl::forward(const GraphTensors& g, const at::Tensor& edge_mask) {
  // Layer 1 reads the sparse features (x undefined: feature_matmul with input dropout).
  at::Tensor h = attend(g, at::Tensor(), masked_weight(w1_, 0), a1_src_, a1_dst_, heads_, edge_mask)
                     .view({g.num_nodes, -1});
  h = fast_dropout(torch::elu(h), dropout_, is_training());  // [N, H·hidden]
  return attend(g, h, masked_weight(w2_, 1), a2_src_, a2_dst_, 1, edge_mask)
      .view({g.num_nodes, classes_});
}

double GatImpl::inference_macs(const GraphTensors& g) {
  const double n = static_cast<double>(g.num_nodes);
  const double entries = kept_entries(g, {}, /*with_added_loops=*/true);
  // transforms + attention scores (2 dot products per node and head) + weighted aggregation
  return n * (nonzeros(w1_) + nonzeros(w2_)) +
         n * 2.0 * static_cast<double>(heads_ * hidden_ + classes_) +
         entries * static_cast<double>(heads_ * hidden_ + classes_);
}

}  // namespace sparsetrain::teddy
