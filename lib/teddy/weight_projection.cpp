// l0 projection and mask selection (see weight_projection.h).
#include "teddy/weight_projection.h"

#include <torch/torch.h>

#include <cmath>

#include "common/error.h"

namespace sparsetrain::teddy {

ProjectionSet parse_projection_set(const std::string& name) {
  if (name == "all") return ProjectionSet::kAll;
  if (name == "weights") return ProjectionSet::kWeights;
  throw common::UsageError("unknown projection set '" + name + "'", "choose all or weights");
}

std::vector<at::Tensor> projection_parameters(GnnModelImpl& model, ProjectionSet set) {
  if (set == ProjectionSet::kWeights) return model.weight_matrices();
  return model.parameters();
}

std::int64_t total_numel(const std::vector<at::Tensor>& tensors) {
  std::int64_t n = 0;
  for (const at::Tensor& t : tensors) n += t.numel();
  return n;
}

std::int64_t zero_count(std::int64_t n, double sparsity) {
  if (!(sparsity >= 0 && sparsity <= 1)) {
    throw common::UsageError("weight sparsity " + std::to_string(sparsity) + " is outside [0, 1]",
                             "pass a fraction such as 0.67");
  }
  return std::min<std::int64_t>(
      n, static_cast<std::int64_t>(std::ceil(static_cast<double>(n) * sparsity - 1e-9)));
}

std::vector<at::Tensor> lowest_k_masks(const std::vector<at::Tensor>& scores, std::int64_t k) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> flat;
  for (const at::Tensor& s : scores) flat.push_back(s.detach().reshape({-1}).to(torch::kFloat64));
  const at::Tensor all = torch::cat(flat);  // [n]
  const std::int64_t n = all.numel();
  at::Tensor zero;
  if (k <= 0) {
    zero = torch::zeros({n}, torch::kBool);
  } else if (k >= n) {
    zero = torch::ones({n}, torch::kBool);
  } else {
    const at::Tensor thr = std::get<0>(torch::kthvalue(all, k));  // k-th smallest
    const at::Tensor less = all < thr;
    const at::Tensor eq = all == thr;
    const std::int64_t need = k - less.sum().item<std::int64_t>();
    zero = less | (eq & (eq.to(torch::kInt64).cumsum(0) <= need));
  }
  std::vector<at::Tensor> masks;
  std::int64_t at = 0;
  for (const at::Tensor& s : scores) {
    masks.push_back((~zero.slice(0, at, at + s.numel())).view(s.sizes()).to(s.scalar_type()));
    at += s.numel();
  }
  return masks;
}

void project_l0(const std::vector<at::Tensor>& params, double sparsity) {
  const std::int64_t k = zero_count(total_numel(params), sparsity);
  if (k == 0) return;
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> magnitudes;
  for (const at::Tensor& p : params) magnitudes.push_back(p.abs());
  const std::vector<at::Tensor> masks = lowest_k_masks(magnitudes, k);
  for (std::size_t i = 0; i < params.size(); ++i) params[i].mul_(masks[i]);
}

std::vector<at::Tensor> random_masks(const std::vector<at::Tensor>& params, double sparsity,
                                     std::uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::vector<at::Tensor> scores;
  for (const at::Tensor& p : params) {
    scores.push_back(torch::rand(p.sizes(), gen, torch::TensorOptions().dtype(p.scalar_type())));
  }
  std::vector<at::Tensor> masks = lowest_k_masks(scores, zero_count(total_numel(params), sparsity));
  return masks;
}

double zero_fraction(const std::vector<at::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  std::int64_t zeros = 0;
  for (const at::Tensor& t : tensors) zeros += (t == 0).sum().item<std::int64_t>();
  const std::int64_t n = total_numel(tensors);
  return n ? static_cast<double>(zeros) / static_cast<double>(n) : 0.0;
}

}  // namespace sparsetrain::teddy
