// Log-domain Sinkhorn distance (see sinkhorn.h), as one autograd function of the cost matrix with
// a hand-written backward through every iteration.
//
// Why not torch ops: autograd through 10 iterations of logsumexp materialises ~60 [n, m] tensors
// per call (1.5 GB and ~0.6 s per Cora epoch on 2 cores). Here nothing [n, m] is kept but the cost
// and its transpose (and their gradients in the backward); every pass is one fused loop over a
// row with a vectorised exp, rows split over the threads in fixed chunks.
#include "teddy/gnn/sinkhorn.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/error.h"

namespace sparsetrain::teddy {

namespace {

constexpr std::int64_t kChunks = 16;  // fixed row chunks: sums do not depend on the thread count

// The rows [0, rows) in kChunks fixed chunks, on all threads; fn(chunk, lo, hi).
template <class Fn>
void for_row_chunks(std::int64_t rows, const Fn& fn) {
  const std::int64_t per = (rows + kChunks - 1) / kChunks;
  at::parallel_for(0, kChunks, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t c = begin; c < end; ++c) {
      const std::int64_t lo = std::min(rows, c * per), hi = std::min(rows, (c + 1) * per);
      if (lo < hi) fn(c, lo, hi);
    }
  });
}

// e^x: float, Cephes' expf (Cody-Waite reduction, degree-6 polynomial, ~2 ulp; below −87 it
// gives e^−87 instead of a denormal or 0), branch-free so the row loops vectorize; double,
// std::exp (the tests' float64 path).
inline float exp_of(float x) {
  x = x > -87.0f ? x : -87.0f;
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}
inline double exp_of(double x) { return std::exp(x); }

// The row primitives, on one row c[0, cols) of the cost; 16 partial sums let the compiler
// vectorize the reductions (and make them independent of the vector width). The float versions
// are compiled for AVX2 too, chosen at run time (target_clones).
// Not under ThreadSanitizer: the clones' ifunc resolvers run before its runtime is up and crash
// the process at load (the TSan preset).
#if defined(__SANITIZE_THREAD__)
#define SPARSETRAIN_ROW_KERNEL
#else
#define SPARSETRAIN_ROW_KERNEL __attribute__((target_clones("avx2", "default")))
#endif

// LSE_j((in_j − c_j)/ε) with the row maximum taken out first.
template <class T>
T row_lse_impl(const T* c, const T* in, std::int64_t cols, T inv_eps) {
  T top[16];
  for (T& t : top) t = -std::numeric_limits<T>::infinity();
  std::int64_t j = 0;
  for (; j + 16 <= cols; j += 16) {
    for (int l = 0; l < 16; ++l) {
      const T t = in[j + l] - c[j + l];
      top[l] = top[l] > t ? top[l] : t;
    }
  }
  T best = -std::numeric_limits<T>::infinity();
  for (const T t : top) best = best > t ? best : t;
  for (; j < cols; ++j) best = std::max(best, in[j] - c[j]);
  T sum[16] = {};
  j = 0;
  for (; j + 16 <= cols; j += 16) {
    for (int l = 0; l < 16; ++l) sum[l] += exp_of((in[j + l] - c[j + l] - best) * inv_eps);
  }
  T total = 0;
  for (const T t : sum) total += t;
  for (; j < cols; ++j) total += exp_of((in[j] - c[j] - best) * inv_eps);
  return best * inv_eps + std::log(total);
}
SPARSETRAIN_ROW_KERNEL float row_lse(const float* c, const float* in, std::int64_t cols,
                                     float inv_eps) {
  return row_lse_impl(c, in, cols, inv_eps);
}
double row_lse(const double* c, const double* in, std::int64_t cols, double inv_eps) {
  return row_lse_impl(c, in, cols, inv_eps);
}

// s_j = e^((in_j − c_j)/ε − shift)·g: gc_j += s_j, acc_j += s_j.
template <class T>
void row_softmax_grad_impl(const T* c, const T* in, std::int64_t cols, T inv_eps, T shift, T g,
                           T* gc, T* acc) {
  for (std::int64_t j = 0; j < cols; ++j) {
    const T s = exp_of((in[j] - c[j]) * inv_eps - shift) * g;
    gc[j] += s;
    acc[j] += s;
  }
}
SPARSETRAIN_ROW_KERNEL void row_softmax_grad(const float* c, const float* in, std::int64_t cols,
                                             float inv_eps, float shift, float g, float* gc,
                                             float* acc) {
  row_softmax_grad_impl(c, in, cols, inv_eps, shift, g, gc, acc);
}
void row_softmax_grad(const double* c, const double* in, std::int64_t cols, double inv_eps,
                      double shift, double g, double* gc, double* acc) {
  row_softmax_grad_impl(c, in, cols, inv_eps, shift, g, gc, acc);
}

// The plan's row p_j = e^((u + v_j − c_j)/ε): returns Σ_j p_j·c_j; with gc, also
// gc_j += p_j·(1 − c_j/ε) (the cost's own gradient).
template <class T>
T row_plan_impl(const T* c, const T* v, std::int64_t cols, T inv_eps, T u, T* gc) {
  T sum[16] = {};
  std::int64_t j = 0;
  for (; j + 16 <= cols; j += 16) {
    for (int l = 0; l < 16; ++l) {
      const T p = exp_of((u + v[j + l] - c[j + l]) * inv_eps);
      sum[l] += p * c[j + l];
      if (gc) gc[j + l] += p * (1 - c[j + l] * inv_eps);
    }
  }
  T total = 0;
  for (const T t : sum) total += t;
  for (; j < cols; ++j) {
    const T p = exp_of((u + v[j] - c[j]) * inv_eps);
    total += p * c[j];
    if (gc) gc[j] += p * (1 - c[j] * inv_eps);
  }
  return total;
}
SPARSETRAIN_ROW_KERNEL float row_plan(const float* c, const float* v, std::int64_t cols,
                                      float inv_eps, float u, float* gc) {
  return row_plan_impl(c, v, cols, inv_eps, u, gc);
}
double row_plan(const double* c, const double* v, std::int64_t cols, double inv_eps, double u,
                double* gc) {
  return row_plan_impl(c, v, cols, inv_eps, u, gc);
}

// One half-iteration: out_i = ε·(log_w − LSE_j((in_j − C_ij)/ε)) for the rows of C ([rows, cols]).
template <class T>
void lse_update(const T* cost, std::int64_t rows, std::int64_t cols, const T* in, double log_w,
                double eps, T* out) {
  for_row_chunks(rows, [&](std::int64_t, std::int64_t lo, std::int64_t hi) {
    for (std::int64_t i = lo; i < hi; ++i) {
      out[i] = static_cast<T>(eps * (log_w - row_lse(cost + i * cols, in, cols, T(1 / eps))));
    }
  });
}

// Backward of one half-iteration out = ε·(log_w − LSE_j((in_j − C_ij)/ε)) given g_out: with
// S_ij = exp((in_j − C_ij)/ε − L_i), L_i = log_w − out_i/ε (the row's softmax),
//   g_cost_ij += S_ij·g_out_i,   g_in_j −= Σ_i S_ij·g_out_i.
template <class T>
void lse_backward(const T* cost, std::int64_t rows, std::int64_t cols, const T* in, const T* out,
                  double log_w, double eps, const T* g_out, T* g_cost, T* g_in) {
  std::vector<std::vector<T>> partial(kChunks);
  for_row_chunks(rows, [&](std::int64_t chunk, std::int64_t lo, std::int64_t hi) {
    std::vector<T>& acc = partial[static_cast<std::size_t>(chunk)];
    acc.assign(static_cast<std::size_t>(cols), T(0));
    for (std::int64_t i = lo; i < hi; ++i) {
      if (g_out[i] == 0) continue;
      row_softmax_grad(cost + i * cols, in, cols, T(1 / eps), T(log_w - out[i] / eps), g_out[i],
                       g_cost + i * cols, acc.data());
    }
  });
  for (const std::vector<T>& acc : partial) {
    for (std::size_t j = 0; j < acc.size(); ++j) g_in[j] -= acc[j];
  }
}

// u^k, v^k of every iteration k (u^0 unused, v^0 = ε·log b): the backward's inputs.
template <class T>
struct Iterates {
  std::vector<std::vector<T>> u, v;
};

// Runs the iterations on cost [n, m] (and its transpose [m, n]); returns the distance.
template <class T>
double sinkhorn_forward(const T* cost, const T* cost_t, std::int64_t n, std::int64_t m,
                        const SinkhornOptions& o, Iterates<T>& it) {
  const double log_a = -std::log(double(n)), log_b = -std::log(double(m));
  it.u.assign(1, std::vector<T>(static_cast<std::size_t>(n), T(0)));
  it.v.assign(1, std::vector<T>(static_cast<std::size_t>(m), T(o.eps * log_b)));
  for (int k = 1; k <= o.max_iters; ++k) {
    std::vector<T> u(static_cast<std::size_t>(n)), v(static_cast<std::size_t>(m));
    lse_update(cost, n, m, it.v.back().data(), log_a, o.eps, u.data());
    lse_update(cost_t, m, n, u.data(), log_b, o.eps, v.data());
    double du = 0, dv = 0;
    for (std::int64_t i = 0; i < n; ++i) du = std::max(du, double(std::abs(u[i] - it.u.back()[i])));
    for (std::int64_t j = 0; j < m; ++j) dv = std::max(dv, double(std::abs(v[j] - it.v.back()[j])));
    it.u.push_back(std::move(u));
    it.v.push_back(std::move(v));
    if (du < o.stop && dv < o.stop) break;
  }
  const T* u = it.u.back().data();
  const T* v = it.v.back().data();
  std::vector<double> partial(kChunks, 0.0);
  for_row_chunks(n, [&](std::int64_t chunk, std::int64_t lo, std::int64_t hi) {
    double sum = 0;
    for (std::int64_t i = lo; i < hi; ++i)
      sum += row_plan(cost + i * m, v, m, T(1 / o.eps), u[i], static_cast<T*>(nullptr));
    partial[static_cast<std::size_t>(chunk)] = sum;
  });
  double total = 0;
  for (const double p : partial) total += p;
  return total;
}

// d distance / d cost, as g_cost ([n, m]) + g_cost_tᵀ ([m, n]), through the final plan and every
// iteration.
template <class T>
void sinkhorn_backward(const T* cost, const T* cost_t, std::int64_t n, std::int64_t m,
                       const SinkhornOptions& o, const Iterates<T>& it, T* g_cost, T* g_cost_t) {
  const double log_a = -std::log(double(n)), log_b = -std::log(double(m));
  const T inv_eps = T(1 / o.eps);
  const std::size_t last = it.u.size() - 1;
  // The plan P_ij = exp((u_i + v_j − C_ij)/ε), D = Σ P·C: dD/dC = P·(1 − C/ε), dD/du_i =
  // Σ_j P·C/ε, dD/dv_j = Σ_i P·C/ε (the column sums, from the transpose).
  std::vector<T> gu(static_cast<std::size_t>(n), T(0)), gv(static_cast<std::size_t>(m), T(0));
  const T* u = it.u[last].data();
  const T* v = it.v[last].data();
  for_row_chunks(n, [&](std::int64_t, std::int64_t lo, std::int64_t hi) {
    for (std::int64_t i = lo; i < hi; ++i)
      gu[static_cast<std::size_t>(i)] =
          row_plan(cost + i * m, v, m, inv_eps, u[i], g_cost + i * m) * inv_eps;
  });
  for_row_chunks(m, [&](std::int64_t, std::int64_t lo, std::int64_t hi) {
    for (std::int64_t j = lo; j < hi; ++j)
      gv[static_cast<std::size_t>(j)] =
          row_plan(cost_t + j * n, u, n, inv_eps, v[j], static_cast<T*>(nullptr)) * inv_eps;
  });
  // Back through the iterations: v^k = f(u^k, C) over the transpose, u^k = f(v^{k-1}, C).
  for (std::size_t k = last; k >= 1; --k) {
    lse_backward(cost_t, m, n, it.u[k].data(), it.v[k].data(), log_b, o.eps, gv.data(), g_cost_t,
                 gu.data());
    std::vector<T> gv_prev(static_cast<std::size_t>(m), T(0));
    lse_backward(cost, n, m, it.v[k - 1].data(), it.u[k].data(), log_a, o.eps, gu.data(), g_cost,
                 gv_prev.data());
    gv = std::move(gv_prev);  // v^0 is a constant: its gradient goes nowhere
    std::fill(gu.begin(), gu.end(), T(0));
  }
}

struct SinkhornFunction : torch::autograd::Function<SinkhornFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& cost,
                            double eps, std::int64_t max_iters, double stop) {
    const at::Tensor c = cost.contiguous();
    const at::Tensor c_t = c.t().contiguous();
    const SinkhornOptions o{eps, static_cast<int>(max_iters), stop};
    double distance = 0;
    at::Tensor u_hist, v_hist;
    AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "sinkhorn_forward", [&] {
      Iterates<scalar_t> it;
      distance = sinkhorn_forward(c.data_ptr<scalar_t>(), c_t.data_ptr<scalar_t>(), c.size(0),
                                  c.size(1), o, it);
      u_hist = pack(it.u, c.scalar_type());
      v_hist = pack(it.v, c.scalar_type());
    });
    ctx->save_for_backward({c, c_t});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["max_iters"] = max_iters;
    ctx->saved_data["stop"] = stop;
    ctx->saved_data["u"] = u_hist;  // [iterations + 1, n]
    ctx->saved_data["v"] = v_hist;  // [iterations + 1, m]
    return torch::full({}, distance, cost.options());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& c = saved[0];
    const at::Tensor& c_t = saved[1];
    const SinkhornOptions o{ctx->saved_data["eps"].toDouble(),
                            static_cast<int>(ctx->saved_data["max_iters"].toInt()),
                            ctx->saved_data["stop"].toDouble()};
    const std::int64_t n = c.size(0), m = c.size(1);
    at::Tensor g = torch::zeros({n, m}, c.options());
    at::Tensor g_t = torch::zeros({m, n}, c.options());
    AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "sinkhorn_backward", [&] {
      const Iterates<scalar_t> it{unpack<scalar_t>(ctx->saved_data["u"].toTensor()),
                                  unpack<scalar_t>(ctx->saved_data["v"].toTensor())};
      sinkhorn_backward(c.data_ptr<scalar_t>(), c_t.data_ptr<scalar_t>(), n, m, o, it,
                        g.data_ptr<scalar_t>(), g_t.data_ptr<scalar_t>());
    });
    const at::Tensor g_cost = (g + g_t.t()).mul_(grad[0]);
    return {g_cost, at::Tensor(), at::Tensor(), at::Tensor()};
  }

  template <class T>
  static at::Tensor pack(const std::vector<std::vector<T>>& rows, at::ScalarType dtype) {
    at::Tensor t = torch::empty(
        {static_cast<std::int64_t>(rows.size()), static_cast<std::int64_t>(rows[0].size())}, dtype);
    for (std::size_t k = 0; k < rows.size(); ++k) {
      std::copy(rows[k].begin(), rows[k].end(), t.data_ptr<T>() + k * rows[k].size());
    }
    return t;
  }
  template <class T>
  static std::vector<std::vector<T>> unpack(const at::Tensor& t) {
    std::vector<std::vector<T>> rows(static_cast<std::size_t>(t.size(0)));
    for (std::size_t k = 0; k < rows.size(); ++k) {
      const T* p = t.data_ptr<T>() + static_cast<std::int64_t>(k) * t.size(1);
      rows[k].assign(p, p + t.size(1));
    }
    return rows;
  }
};

}  // namespace

at::Tensor sinkhorn_distance(const at::Tensor& x, const at::Tensor& y, const SinkhornOptions& o) {
  ST_ASSERT(
      x.dim() == 2 && y.dim() == 2 && x.size(1) == y.size(1) && x.size(0) > 0 && y.size(0) > 0,
      "sinkhorn_distance takes [n, d] and [m, d] with n, m >= 1");
  // cdist's backward is 0 where a distance is 0 (the sqrt's derivative would be infinite there).
  const at::Tensor cost = torch::cdist(x, y, 2.0);  // [n, m]
  return SinkhornFunction::apply(cost, o.eps, static_cast<std::int64_t>(o.max_iters), o.stop);
}

}  // namespace sparsetrain::teddy
