// Fused CPU AdamW: scalar, AVX2 and AVX-512 bodies of one update pass, run-time dispatch,
// threading.
//
// Bit-for-bit recipe of torch::optim::AdamW on fp32 tensors with ATen's vectorised CPU kernels
// (checked against torch 2.11, AVX512 capability): every double scalar is rounded to fp32 first,
//   p  = p * (1 - lr*wd)                              mul_
//   m  = fma(g, 1 - beta1, m * beta1)                 mul_, add_(g, alpha): Vectorized fmadd
//   v  = fma((1 - beta2) * g, g, v * beta2)           mul_, addcmul_: contracted by the compiler
//   d  = sqrt(v) / sqrt(1 - beta2^step) + eps         sqrt, div (true division), add_
//   p  = p + ((-lr / (1 - beta1^step)) * m) / d       addcdiv_
// Every ISA body does exactly these fp32 operations in this order (the file is compiled with
// -ffp-contract=off so nothing else is fused), so all of them agree bit for bit. The one
// difference from torch: its fp32 sqrt goes through MKL's vector math and is 1 ulp off the
// correctly rounded value for ~0.7% of inputs; ours is the hardware's correctly rounded sqrt.
// Throughput: two divisions and a sqrt per element saturate the divider (~1.3 Gparam/s per core
// on the development Xeon, in cache); at 2 threads the pass is memory-bound, so the weights go
// out with non-temporal stores for large runs (SPARSETRAIN_ADAMW_NT=0 turns that off, for A/B
// runs). bf16 gradients are widened exactly; bf16 weights are rounded to nearest-even as
// c10::BFloat16 does (NaN -> 0x7FC0), in integer arithmetic so that subnormals survive
// (VCVTNEPS2BF16 would flush them).
#include "fuyou/optim/cpu_adam.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/error.h"

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and trip -Wmaybe-uninitialized
// (GCC bug 105593); the values are fully defined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace sparsetrain::fuyou {

namespace {

// The per-step scalars, each rounded to fp32 as ATen rounds a double Scalar for an fp32 tensor.
struct StepScalars {
  float decay;  // 1 - lr * weight_decay
  float beta1, one_minus_beta1;
  float beta2, one_minus_beta2;
  float sqrt_bias2;  // sqrt(1 - beta2^step)
  float eps;
  float neg_step_size;  // -lr / (1 - beta1^step)
};

enum class OutKind { kNone, kFp32, kBf16 };

// ---------------------------------------------------------------------------------------------
// Scalar body (also the reference the vector bodies must equal).

inline float bf16_to_fp32(std::uint16_t h) {
  const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline std::uint16_t fp32_to_bf16(float f) {
  if (std::isnan(f)) return 0x7FC0;
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>(bits >> 16);
}

template <bool kGradBf16, OutKind kOut>
void adamw_scalar(const StepScalars& s, std::int64_t n, float* p, float* m, float* v,
                  const void* grad, void* out) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = kGradBf16 ? bf16_to_fp32(static_cast<const std::uint16_t*>(grad)[i])
                              : static_cast<const float*>(grad)[i];
    const float pd = p[i] * s.decay;
    const float mi = std::fma(g, s.one_minus_beta1, m[i] * s.beta1);
    const float vi = std::fma(s.one_minus_beta2 * g, g, v[i] * s.beta2);
    const float denom = std::sqrt(vi) / s.sqrt_bias2 + s.eps;
    const float pi = pd + (s.neg_step_size * mi) / denom;
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
    if constexpr (kOut == OutKind::kFp32) static_cast<float*>(out)[i] = pi;
    if constexpr (kOut == OutKind::kBf16) static_cast<std::uint16_t*>(out)[i] = fp32_to_bf16(pi);
  }
}

// ---------------------------------------------------------------------------------------------
// AVX2 + FMA body: 8 lanes; the last n % 8 elements go through zero-padded stack copies.

#define ST_AVX2 __attribute__((target("avx2,fma")))

// Whether to write the weights with non-temporal stores: only for runs far larger than the caches
// (they skip the read-for-ownership of lines we overwrite whole), and only when aligned.
bool stream_out(std::int64_t n, const void* out, std::uintptr_t alignment) {
  static const bool enabled = [] {
    const char* e = std::getenv("SPARSETRAIN_ADAMW_NT");
    return e == nullptr || e[0] != '0';
  }();
  return enabled && out != nullptr && n >= (1 << 20) &&
         reinterpret_cast<std::uintptr_t>(out) % alignment == 0;
}

ST_AVX2 inline __m256 avx2_load_grad(const void* grad, std::int64_t i, bool bf16) {
  if (bf16) {
    const __m128i h = _mm_loadu_si128(
        reinterpret_cast<const __m128i*>(static_cast<const std::uint16_t*>(grad) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  return _mm256_loadu_ps(static_cast<const float*>(grad) + i);
}

ST_AVX2 inline __m128i avx2_to_bf16(__m256 x) {
  const __m256i bits = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(
      _mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);
  // Values fit 16 bits, so unsigned saturation packs them exactly.
  return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}

template <bool kGradBf16, OutKind kOut>
ST_AVX2 void adamw_avx2_full(const StepScalars& s, std::int64_t n, float* p, float* m, float* v,
                             const void* grad, void* out) {
  const bool stream = stream_out(n, out, kOut == OutKind::kBf16 ? 16 : 32);
  const __m256 decay = _mm256_set1_ps(s.decay);
  const __m256 beta1 = _mm256_set1_ps(s.beta1), omb1 = _mm256_set1_ps(s.one_minus_beta1);
  const __m256 beta2 = _mm256_set1_ps(s.beta2), omb2 = _mm256_set1_ps(s.one_minus_beta2);
  const __m256 sqrt_bias2 = _mm256_set1_ps(s.sqrt_bias2), eps = _mm256_set1_ps(s.eps);
  const __m256 neg_step = _mm256_set1_ps(s.neg_step_size);
  for (std::int64_t i = 0; i < n; i += 8) {  // n: multiple of 8
    const __m256 g = avx2_load_grad(grad, i, kGradBf16);
    const __m256 pd = _mm256_mul_ps(_mm256_loadu_ps(p + i), decay);
    const __m256 mi = _mm256_fmadd_ps(g, omb1, _mm256_mul_ps(_mm256_loadu_ps(m + i), beta1));
    const __m256 vi =
        _mm256_fmadd_ps(_mm256_mul_ps(omb2, g), g, _mm256_mul_ps(_mm256_loadu_ps(v + i), beta2));
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), sqrt_bias2), eps);
    const __m256 pi = _mm256_add_ps(pd, _mm256_div_ps(_mm256_mul_ps(neg_step, mi), denom));
    _mm256_storeu_ps(p + i, pi);
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    if constexpr (kOut == OutKind::kFp32) {
      float* o = static_cast<float*>(out) + i;
      stream ? _mm256_stream_ps(o, pi) : _mm256_storeu_ps(o, pi);
    }
    if constexpr (kOut == OutKind::kBf16) {
      auto* o = reinterpret_cast<__m128i*>(static_cast<std::uint16_t*>(out) + i);
      stream ? _mm_stream_si128(o, avx2_to_bf16(pi)) : _mm_storeu_si128(o, avx2_to_bf16(pi));
    }
  }
  if (stream) _mm_sfence();
}

// Runs a full-width body on the last `rem` (< width) elements through zero-padded copies.
template <int kWidth, typename Body>
void run_tail(Body body, const StepScalars& s, std::int64_t rem, float* p, float* m, float* v,
              const void* grad, bool grad_bf16, void* out, OutKind out_kind) {
  if (rem == 0) return;
  alignas(64) float tp[kWidth] = {}, tm[kWidth] = {}, tv[kWidth] = {}, tg[kWidth] = {},
                    tw[kWidth] = {};
  const std::size_t fbytes = static_cast<std::size_t>(rem) * 4;
  std::memcpy(tp, p, fbytes);
  std::memcpy(tm, m, fbytes);
  std::memcpy(tv, v, fbytes);
  std::memcpy(tg, grad, static_cast<std::size_t>(rem) * (grad_bf16 ? 2 : 4));
  body(s, kWidth, tp, tm, tv, tg, tw);
  std::memcpy(p, tp, fbytes);
  std::memcpy(m, tm, fbytes);
  std::memcpy(v, tv, fbytes);
  if (out_kind != OutKind::kNone)
    std::memcpy(out, tw, static_cast<std::size_t>(rem) * (out_kind == OutKind::kBf16 ? 2 : 4));
}

template <bool kGradBf16, OutKind kOut>
void adamw_avx2(const StepScalars& s, std::int64_t n, float* p, float* m, float* v,
                const void* grad, void* out) {
  const std::int64_t full = n - n % 8;
  adamw_avx2_full<kGradBf16, kOut>(s, full, p, m, v, grad, out);
  const std::int64_t gsize = kGradBf16 ? 2 : 4, osize = kOut == OutKind::kBf16 ? 2 : 4;
  run_tail<8>(adamw_avx2_full<kGradBf16, kOut>, s, n - full, p + full, m + full, v + full,
              static_cast<const char*>(grad) + full * gsize, kGradBf16,
              kOut == OutKind::kNone ? nullptr : static_cast<char*>(out) + full * osize, kOut);
}

// ---------------------------------------------------------------------------------------------
// AVX-512 body: 16 lanes, the tail with masked loads and stores (masked-off lanes never fault).

#define ST_AVX512 __attribute__((target("avx512f,avx512bw")))

template <bool kTail>
ST_AVX512 inline __m512 avx512_load(const float* x, __mmask16 k) {
  return kTail ? _mm512_maskz_loadu_ps(k, x) : _mm512_loadu_ps(x);
}
template <bool kTail>
ST_AVX512 inline void avx512_store(float* x, __m512 value, __mmask16 k) {
  if (kTail) {
    _mm512_mask_storeu_ps(x, k, value);
  } else {
    _mm512_storeu_ps(x, value);
  }
}

template <bool kTail>
ST_AVX512 inline __m512 avx512_load_bf16(const std::uint16_t* x, __mmask16 k) {
  const __m256i h =
      kTail ? _mm512_castsi512_si256(_mm512_maskz_loadu_epi16(static_cast<__mmask32>(k), x))
            : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

template <bool kTail>
ST_AVX512 inline void avx512_store_bf16(std::uint16_t* x, __m512 value, __mmask16 k, bool stream) {
  const __m512i bits = _mm512_castps_si512(value);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(
      _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
  r = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(value, value, _CMP_UNORD_Q), r,
                              _mm512_set1_epi32(0x7FC0));
  const __m256i h = _mm512_cvtepi32_epi16(r);
  if (kTail) {
    _mm512_mask_storeu_epi16(x, static_cast<__mmask32>(k), _mm512_castsi256_si512(h));
  } else if (stream) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(x), h);
  } else {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x), h);
  }
}

template <bool kGradBf16, OutKind kOut, bool kTail>
ST_AVX512 inline void avx512_block(const StepScalars& s, std::int64_t i, __mmask16 k, float* p,
                                   float* m, float* v, const void* grad, void* out, bool stream) {
  const __m512 g = kGradBf16
                       ? avx512_load_bf16<kTail>(static_cast<const std::uint16_t*>(grad) + i, k)
                       : avx512_load<kTail>(static_cast<const float*>(grad) + i, k);
  const __m512 pd = _mm512_mul_ps(avx512_load<kTail>(p + i, k), _mm512_set1_ps(s.decay));
  const __m512 mi =
      _mm512_fmadd_ps(g, _mm512_set1_ps(s.one_minus_beta1),
                      _mm512_mul_ps(avx512_load<kTail>(m + i, k), _mm512_set1_ps(s.beta1)));
  const __m512 vi =
      _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(s.one_minus_beta2), g), g,
                      _mm512_mul_ps(avx512_load<kTail>(v + i, k), _mm512_set1_ps(s.beta2)));
  const __m512 denom = _mm512_add_ps(
      _mm512_div_ps(_mm512_sqrt_ps(vi), _mm512_set1_ps(s.sqrt_bias2)), _mm512_set1_ps(s.eps));
  const __m512 pi =
      _mm512_add_ps(pd, _mm512_div_ps(_mm512_mul_ps(_mm512_set1_ps(s.neg_step_size), mi), denom));
  avx512_store<kTail>(p + i, pi, k);
  avx512_store<kTail>(m + i, mi, k);
  avx512_store<kTail>(v + i, vi, k);
  if constexpr (kOut == OutKind::kFp32) {
    if (!kTail && stream) {
      _mm512_stream_ps(static_cast<float*>(out) + i, pi);
    } else {
      avx512_store<kTail>(static_cast<float*>(out) + i, pi, k);
    }
  }
  if constexpr (kOut == OutKind::kBf16) {
    avx512_store_bf16<kTail>(static_cast<std::uint16_t*>(out) + i, pi, k, stream);
  }
}

template <bool kGradBf16, OutKind kOut>
ST_AVX512 void adamw_avx512(const StepScalars& s, std::int64_t n, float* p, float* m, float* v,
                            const void* grad, void* out) {
  const bool stream = stream_out(n, out, kOut == OutKind::kBf16 ? 32 : 64);
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    avx512_block<kGradBf16, kOut, false>(s, i, 0xFFFF, p, m, v, grad, out, stream);
  if (i < n) {
    const auto k = static_cast<__mmask16>((1u << (n - i)) - 1u);
    avx512_block<kGradBf16, kOut, true>(s, i, k, p, m, v, grad, out, stream);
  }
  if (stream) _mm_sfence();  // non-temporal stores are weakly ordered: publish before returning
}

// ---------------------------------------------------------------------------------------------
// Dispatch.

using KernelFn = void (*)(const StepScalars&, std::int64_t, float*, float*, float*, const void*,
                          void*);

template <template <bool, OutKind> class Pick>
KernelFn select(bool grad_bf16, OutKind out) {
  switch (out) {
    case OutKind::kNone:
      return grad_bf16 ? Pick<true, OutKind::kNone>::kFn : Pick<false, OutKind::kNone>::kFn;
    case OutKind::kFp32:
      return grad_bf16 ? Pick<true, OutKind::kFp32>::kFn : Pick<false, OutKind::kFp32>::kFn;
    case OutKind::kBf16:
      return grad_bf16 ? Pick<true, OutKind::kBf16>::kFn : Pick<false, OutKind::kBf16>::kFn;
  }
  return nullptr;
}
template <bool G, OutKind O>
struct PickScalar {
  static constexpr KernelFn kFn = adamw_scalar<G, O>;
};
template <bool G, OutKind O>
struct PickAvx2 {
  static constexpr KernelFn kFn = adamw_avx2<G, O>;
};
template <bool G, OutKind O>
struct PickAvx512 {
  static constexpr KernelFn kFn = adamw_avx512<G, O>;
};

bool cpu_has(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return true;
    case CpuIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CpuIsa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    case CpuIsa::kAuto:
      return true;
  }
  return false;
}

// Work split: blocks of 16384 elements (64 KiB per fp32 array, whole cache lines), contiguous runs
// of blocks per thread; below 4 blocks one thread is faster than waking the others.
constexpr std::int64_t kBlockElems = 16384;
constexpr std::int64_t kMinBlocksPerTask = 4;

void check_options(const AdamWOptions& o, std::int64_t step, std::int64_t n) {
  const auto bad = [](const std::string& what, const std::string& hint) {
    throw common::UsageError("AdamW: " + what, hint);
  };
  if (!(o.lr >= 0))
    bad("learning rate " + std::to_string(o.lr) + " is negative or NaN", "pass lr >= 0");
  if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1)) {
    bad("betas (" + std::to_string(o.beta1) + ", " + std::to_string(o.beta2) + ") outside [0, 1)",
        "the usual values are 0.9 and 0.95 or 0.999");
  }
  if (!(o.eps >= 0))
    bad("eps " + std::to_string(o.eps) + " is negative or NaN", "pass eps >= 0, e.g. 1e-8");
  if (!(o.weight_decay >= 0)) {
    bad("weight decay " + std::to_string(o.weight_decay) + " is negative or NaN",
        "pass weight_decay >= 0");
  }
  if (step < 1)
    bad("step " + std::to_string(step) + " is not a 1-based step count", "count steps from 1");
  if (n < 0) bad("negative element count " + std::to_string(n), "pass n >= 0");
}

}  // namespace

CpuIsa detect_cpu_isa() {
  if (cpu_has(CpuIsa::kAvx512)) return CpuIsa::kAvx512;
  if (cpu_has(CpuIsa::kAvx2)) return CpuIsa::kAvx2;
  return CpuIsa::kScalar;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAuto:
      return "auto";
    case CpuIsa::kScalar:
      return "scalar";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
  }
  return "?";
}

void adamw_step_raw(const AdamWOptions& options, std::int64_t step, std::int64_t n, float* master,
                    float* m, float* v, const void* grad, bool grad_bf16, void* weights_out,
                    bool weights_bf16, CpuIsa isa) {
  check_options(options, step, n);
  if (isa == CpuIsa::kAuto) isa = detect_cpu_isa();
  if (!cpu_has(isa)) {
    throw common::UsageError(
        std::string("AdamW: this CPU lacks the ") + cpu_isa_name(isa) + " instructions",
        std::string("use auto (here: ") + cpu_isa_name(detect_cpu_isa()) + ")");
  }
  if (n == 0) return;
  const double bias1 = 1.0 - std::pow(options.beta1, static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(options.beta2, static_cast<double>(step));
  const StepScalars s{static_cast<float>(1.0 - options.lr * options.weight_decay),
                      static_cast<float>(options.beta1),
                      static_cast<float>(1.0 - options.beta1),
                      static_cast<float>(options.beta2),
                      static_cast<float>(1.0 - options.beta2),
                      static_cast<float>(std::sqrt(bias2)),
                      static_cast<float>(options.eps),
                      static_cast<float>(-(options.lr / bias1))};
  const OutKind out_kind = weights_out == nullptr ? OutKind::kNone
                           : weights_bf16         ? OutKind::kBf16
                                                  : OutKind::kFp32;
  const KernelFn kernel = isa == CpuIsa::kAvx512 ? select<PickAvx512>(grad_bf16, out_kind)
                          : isa == CpuIsa::kAvx2 ? select<PickAvx2>(grad_bf16, out_kind)
                                                 : select<PickScalar>(grad_bf16, out_kind);
  const std::int64_t grad_bytes = grad_bf16 ? 2 : 4;
  const std::int64_t out_bytes = weights_bf16 ? 2 : 4;
  const std::int64_t blocks = (n + kBlockElems - 1) / kBlockElems;
  at::parallel_for(0, blocks, kMinBlocksPerTask, [&](std::int64_t b0, std::int64_t b1) {
    const std::int64_t i0 = b0 * kBlockElems;
    const std::int64_t i1 = std::min(n, b1 * kBlockElems);
    kernel(s, i1 - i0, master + i0, m + i0, v + i0,
           static_cast<const char*>(grad) + i0 * grad_bytes,
           weights_out == nullptr ? nullptr : static_cast<char*>(weights_out) + i0 * out_bytes);
  });
}

void adamw_step(const AdamWOptions& options, std::int64_t step, at::Tensor& master, at::Tensor& m,
                at::Tensor& v, const at::Tensor& grad, at::Tensor* weights_out, CpuIsa isa) {
  const auto check_fp32 = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(
        t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(),
        "adamw_step: ", name, " must be a contiguous fp32 CPU tensor");
    TORCH_CHECK(t.sizes() == master.sizes(), "adamw_step: ", name, " has shape ", t.sizes(),
                ", master has ", master.sizes());
  };
  check_fp32(master, "master");
  check_fp32(m, "m");
  check_fp32(v, "v");
  const auto check_compute = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() &&
                    (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16),
                "adamw_step: ", name, " must be a contiguous fp32 or bf16 CPU tensor");
    TORCH_CHECK(t.numel() == master.numel(), "adamw_step: ", name, " has ", t.numel(),
                " elements, master has ", master.numel());
  };
  TORCH_CHECK(grad.defined(), "adamw_step: grad is undefined");
  check_compute(grad, "grad");
  const bool has_out = weights_out != nullptr && weights_out->defined();
  if (has_out) check_compute(*weights_out, "weights_out");
  adamw_step_raw(options, step, master.numel(), master.data_ptr<float>(), m.data_ptr<float>(),
                 v.data_ptr<float>(), grad.data_ptr(), grad.scalar_type() == at::kBFloat16,
                 has_out ? weights_out->data_ptr() : nullptr,
                 has_out && weights_out->scalar_type() == at::kBFloat16, isa);
}

}  // namespace sparsetrain::fuyou
