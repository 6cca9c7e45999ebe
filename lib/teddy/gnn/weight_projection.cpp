// l0 projection and mask selection (see weight_projection.h).
#include "teddy/gnn/weight_projection.h"

#include <torch/torch.h>

#include <algorithm>
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

namespace {

// Flags (1 = zero) for the k lowest of `values` (the concatenation, float64 copy), ties to the
// earlier position: std::nth_element for the threshold, then one pass. O(n).
std::vector<std::uint8_t> lowest_k_flags(const std::vector<double>& values, std::int64_t k) {
  const auto n = static_cast<std::int64_t>(values.size());
  std::vector<std::uint8_t> zero(values.size(), 0);
  if (k <= 0) return zero;
  if (k >= n) return std::vector<std::uint8_t>(values.size(), 1);
  std::vector<double> copy = values;
  std::nth_element(copy.begin(), copy.begin() + (k - 1), copy.end());
  const double threshold = copy[static_cast<std::size_t>(k - 1)];
  std::int64_t less = 0;
  for (double v : values) less += v < threshold;
  std::int64_t equal_budget = k - less;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (values[i] < threshold || (values[i] == threshold && equal_budget-- > 0)) zero[i] = 1;
  }
  return zero;
}

std::vector<double> concatenated(const std::vector<at::Tensor>& tensors, bool absolute) {
  std::vector<double> all;
  all.reserve(static_cast<std::size_t>(total_numel(tensors)));
  for (const at::Tensor& t : tensors) {
    const at::Tensor c = t.detach().to(torch::kFloat64).contiguous().view({-1});
    const double* p = c.data_ptr<double>();
    for (std::int64_t i = 0; i < c.numel(); ++i) all.push_back(absolute ? std::abs(p[i]) : p[i]);
  }
  return all;
}

}  // namespace

std::vector<at::Tensor> lowest_k_masks(const std::vector<at::Tensor>& scores, std::int64_t k) {
  torch::NoGradGuard no_grad;
  const std::vector<std::uint8_t> zero = lowest_k_flags(concatenated(scores, false), k);
  std::vector<at::Tensor> masks;
  std::size_t at = 0;
  for (const at::Tensor& s : scores) {
    at::Tensor m = torch::empty({s.numel()}, torch::kFloat64);
    double* mp = m.data_ptr<double>();
    for (std::int64_t i = 0; i < s.numel(); ++i) mp[i] = zero[at++] ? 0.0 : 1.0;
    masks.push_back(m.view(s.sizes()).to(s.scalar_type()));
  }
  return masks;
}

namespace {

// project_l0 for contiguous float32 parameters (every model here): the magnitudes are compared as
// floats — |w| is exact in float32 and float -> double is monotone, so the cut and its ties are
// those of the general path — without float64 copies or a flag array: one copy for nth_element,
// then two passes over the parameters.
void project_l0_float32(const std::vector<at::Tensor>& params, std::int64_t n, std::int64_t k) {
  if (k >= n) {
    for (const at::Tensor& p : params) p.zero_();
    return;
  }
  std::vector<float> magnitude;
  magnitude.reserve(static_cast<std::size_t>(n));
  for (const at::Tensor& p : params) {
    const float* v = p.data_ptr<float>();
    for (std::int64_t i = 0; i < p.numel(); ++i) magnitude.push_back(std::fabs(v[i]));
  }
  std::nth_element(magnitude.begin(), magnitude.begin() + (k - 1), magnitude.end());
  const float threshold = magnitude[static_cast<std::size_t>(k - 1)];
  std::int64_t less = 0;
  for (const at::Tensor& p : params) {
    const float* v = p.data_ptr<float>();
    for (std::int64_t i = 0; i < p.numel(); ++i) less += std::fabs(v[i]) < threshold;
  }
  std::int64_t equal_budget = k - less;  // ties at the threshold: earliest positions first
  for (const at::Tensor& p : params) {
    float* v = p.data_ptr<float>();
    for (std::int64_t i = 0; i < p.numel(); ++i) {
      const float a = std::fabs(v[i]);
      if (a < threshold || (a == threshold && equal_budget-- > 0)) v[i] = 0.0f;
    }
  }
}

}  // namespace

void project_l0(const std::vector<at::Tensor>& params, double sparsity) {
  const std::int64_t n = total_numel(params);
  const std::int64_t k = zero_count(n, sparsity);
  if (k == 0) return;
  torch::NoGradGuard no_grad;
  for (const at::Tensor& p : params)
    ST_ASSERT(p.is_contiguous(), "projected parameters are contiguous");
  const bool float32 = std::all_of(params.begin(), params.end(), [](const at::Tensor& p) {
    return p.scalar_type() == torch::kFloat32 && p.device().is_cpu();
  });
  if (float32) {
    project_l0_float32(params, n, k);
    return;
  }
  const std::vector<std::uint8_t> zero = lowest_k_flags(concatenated(params, true), k);
  std::size_t at = 0;
  for (const at::Tensor& p : params) {
    at::Tensor flags =
        torch::from_blob(const_cast<std::uint8_t*>(zero.data() + at), {p.numel()}, torch::kUInt8);
    p.view({-1}).masked_fill_(flags.to(p.device()).to(torch::kBool), 0.0);
    at += static_cast<std::size_t>(p.numel());
  }
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
