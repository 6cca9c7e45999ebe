// CPU AdamW kernel against torch::optim::AdamW (100 steps, odd sizes, every ISA this CPU has), bf16
// gradient and weight paths against torch's own conversions, and the ISAs against each other.
#include "fuyou/optim/cpu_adam.h"

#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cstring>
#include <limits>
#include <vector>

#include "fuyou/test_util.h"

using namespace sparsetrain::fuyou;

namespace {

const CpuIsa kIsas[] = {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512};

// Whether the CPU has `isa` (forcing one it lacks must be a UsageError).
bool cpu_runs(CpuIsa isa) {
  if (isa == CpuIsa::kScalar) return true;
  return isa == CpuIsa::kAvx2 ? detect_cpu_isa() != CpuIsa::kScalar
                              : detect_cpu_isa() == CpuIsa::kAvx512;
}

// max |a - b| / max |b| (the max-norm relative difference), and how many elements differ in bits.
// Not elementwise |a - b| / |b|: a parameter that crosses zero would compare rounding noise to 0.
struct Diff {
  double max_rel = 0;
  std::int64_t bits_differ = 0;
};
Diff compare(const torch::Tensor& a, const torch::Tensor& b) {
  Diff d;
  d.max_rel = ((a - b).abs().max() / b.abs().max().clamp_min(std::numeric_limits<float>::min()))
                  .item<double>();
  d.bits_differ = (a.view(torch::kInt) != b.view(torch::kInt)).sum().item<std::int64_t>();
  return d;
}

// The gradient of step t (1-based): one of four random tensors, scaled so magnitudes vary over
// three orders and m, v see both growth and decay.
torch::Tensor step_grad(const std::vector<torch::Tensor>& bank, int t) {
  const double scale[] = {1.0, 0.03, 3.0, 0.001, 0.3};
  return bank[static_cast<std::size_t>(t) % bank.size()] * scale[t % 5];
}

std::vector<torch::Tensor> grad_bank(std::int64_t n, int seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> bank;
  for (int i = 0; i < 4; ++i) bank.push_back(torch::randn({n}));
  return bank;
}

}  // namespace

// torch's fp32 sqrt on the CPU goes through MKL's vector math and is 1 ulp off the correctly
// rounded value for ~0.7% of inputs; ours is the correctly rounded hardware sqrt. Every other
// operation is torch's, bit for bit, so m and v must match exactly and the parameters to rounding.
TEST_CASE("after 100 steps every ISA gives torch::optim::AdamW's parameters and moments") {
  const AdamWOptions options{/*lr=*/2e-3, /*beta1=*/0.9, /*beta2=*/0.95, /*eps=*/1e-8,
                             /*weight_decay=*/0.1};
  // One thread: on a loaded 2-core machine torch's OpenMP team spins ~10x slower than one thread
  // (the threaded path is covered by the bit-identity test below).
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  for (std::int64_t n : {1LL, 15LL, 17LL, 1000003LL}) {
    CAPTURE(n);
    const auto bank = grad_bank(n, static_cast<int>(n % 1000));
    torch::manual_seed(7);
    const torch::Tensor init = torch::randn({n});

    // Reference: torch's optimizer on a leaf tensor whose .grad we set each step.
    torch::Tensor ref = init.clone().requires_grad_(true);
    torch::optim::AdamW adamw({ref}, torch::optim::AdamWOptions(options.lr)
                                         .betas({options.beta1, options.beta2})
                                         .eps(options.eps)
                                         .weight_decay(options.weight_decay));
    for (int t = 1; t <= 100; ++t) {
      ref.mutable_grad() = step_grad(bank, t);
      adamw.step();
    }
    auto& state =
        static_cast<torch::optim::AdamWParamState&>(*adamw.state().at(ref.unsafeGetTensorImpl()));

    for (CpuIsa isa : kIsas) {
      INFO("isa " << std::string(cpu_isa_name(isa)));
      if (!cpu_runs(isa)) {
        MESSAGE("skipping " << std::string(cpu_isa_name(isa)) << ": this CPU lacks it");
        continue;
      }
      torch::Tensor master = init.clone(), m = torch::zeros({n}), v = torch::zeros({n});
      for (int t = 1; t <= 100; ++t) {
        adamw_step(options, t, master, m, v, step_grad(bank, t), /*weights_out=*/nullptr, isa);
      }
      const Diff dp = compare(master, ref.detach());
      const Diff dm = compare(m, state.exp_avg());
      const Diff dv = compare(v, state.exp_avg_sq());
      INFO("max-norm relative difference: params " << dp.max_rel << " (" << dp.bits_differ
                                                   << " elements not bit-equal), m " << dm.max_rel
                                                   << ", v " << dv.max_rel);
      CHECK(dp.max_rel <= 1e-6);
      CHECK(dm.bits_differ == 0);
      CHECK(dv.bits_differ == 0);
      if (n > 1000) {
        MESSAGE(std::string(cpu_isa_name(isa))
                << " n=" << n << ": max-norm relative difference to torch " << dp.max_rel << ", "
                << dp.bits_differ << " params not bit-equal");
      }
    }
  }
  at::set_num_threads(threads);
}

TEST_CASE("bf16 gradients give the same step as the same gradients widened to fp32") {
  const AdamWOptions options{};
  for (CpuIsa isa : kIsas) {
    if (!cpu_runs(isa)) continue;
    INFO("isa " << std::string(cpu_isa_name(isa)));
    for (std::int64_t n : {1LL, 17LL, 40000LL}) {
      CAPTURE(n);
      torch::manual_seed(3);
      const torch::Tensor init = torch::randn({n});
      torch::Tensor p16 = init.clone(), m16 = torch::zeros({n}), v16 = torch::zeros({n});
      torch::Tensor p32 = init.clone(), m32 = torch::zeros({n}), v32 = torch::zeros({n});
      for (int t = 1; t <= 5; ++t) {
        const torch::Tensor g16 = torch::randn({n}).to(torch::kBFloat16);
        adamw_step(options, t, p16, m16, v16, g16, nullptr, isa);
        adamw_step(options, t, p32, m32, v32, g16.to(torch::kFloat), nullptr, isa);
      }
      CHECK(torch::equal(p16, p32));
      CHECK(torch::equal(m16, m32));
      CHECK(torch::equal(v16, v32));
    }
  }
}

TEST_CASE(
    "the weights written in the same pass are the new master, rounded to bf16 as torch does") {
  // lr = 0 and zero moments leave the master unchanged, so chosen bit patterns reach the rounding:
  // ties to even in both directions, subnormals, overflow to infinity, infinities, signed zeros.
  const std::vector<std::uint32_t> patterns = {
      0x3F808000, 0x3F818000, 0x3F80FFFF, 0x3F807FFF, 0xBF808000, 0x00008000, 0x00018000,
      0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x00000000,
      0x80000000, 0x3F800000, 0x42F6E979, 0xC2F6E979, 0x33800001, 0x7F7F8000};
  const auto n = static_cast<std::int64_t>(patterns.size());
  torch::Tensor bits = torch::empty({n}, torch::kInt);
  std::memcpy(bits.data_ptr(), patterns.data(), patterns.size() * 4);
  const torch::Tensor values = bits.view(torch::kFloat);
  AdamWOptions frozen;
  frozen.lr = 0;
  for (CpuIsa isa : kIsas) {
    if (!cpu_runs(isa)) continue;
    INFO("isa " << std::string(cpu_isa_name(isa)));
    torch::Tensor master = values.clone(), m = torch::zeros({n}), v = torch::zeros({n});
    torch::Tensor out16 = torch::empty({n}, torch::kBFloat16);
    adamw_step(frozen, 1, master, m, v, torch::zeros({n}), &out16, isa);
    REQUIRE(torch::equal(master.view(torch::kInt), bits));
    const auto* got = static_cast<const std::uint16_t*>(out16.data_ptr());
    for (std::int64_t i = 0; i < n; ++i) {
      CAPTURE(i);
      CHECK(got[i] == c10::BFloat16(values[i].item<float>()).x);
    }
    CHECK(torch::equal(out16.view(torch::kShort), values.to(torch::kBFloat16).view(torch::kShort)));
  }
  // NaN becomes c10's canonical quiet NaN.
  torch::Tensor master = torch::full({3}, std::numeric_limits<float>::quiet_NaN());
  torch::Tensor m = torch::zeros({3}), v = torch::zeros({3});
  torch::Tensor out16 = torch::empty({3}, torch::kBFloat16);
  adamw_step(frozen, 1, master, m, v, torch::zeros({3}), &out16);
  CHECK(static_cast<const std::uint16_t*>(out16.data_ptr())[2] == 0x7FC0);
}

TEST_CASE("every ISA, gradient type, output type, size and thread count gives the same bits") {
  const AdamWOptions options{/*lr=*/1e-2, /*beta1=*/0.8, /*beta2=*/0.99, /*eps=*/1e-6,
                             /*weight_decay=*/0.05};
  std::vector<std::int64_t> sizes;
  for (std::int64_t n = 1; n <= 40; ++n) sizes.push_back(n);
  sizes.push_back(16384 * 5 + 7);               // several blocks, so two threads share the work
  sizes.push_back((1 << 21) + (1 << 18) + 37);  // > 2^20 per thread: non-temporal weight stores
  const int threads = at::get_num_threads();
  for (std::int64_t n : sizes) {
    CAPTURE(n);
    torch::manual_seed(static_cast<std::uint64_t>(n));
    const torch::Tensor p0 = torch::randn({n}), m0 = torch::randn({n}) * 0.1;
    const torch::Tensor v0 = torch::rand({n}) * 0.01, g = torch::randn({n});
    for (bool grad_bf16 : {false, true}) {
      const torch::Tensor grad = grad_bf16 ? g.to(torch::kBFloat16) : g;
      torch::Tensor want_p, want_m, want_v;
      for (CpuIsa isa : kIsas) {
        if (!cpu_runs(isa)) continue;
        for (int nthreads : {1, 2}) {
          INFO("isa " << std::string(cpu_isa_name(isa)));
          CAPTURE(grad_bf16);
          CAPTURE(nthreads);
          at::set_num_threads(nthreads);
          torch::Tensor p = p0.clone(), m = m0.clone(), v = v0.clone();
          torch::Tensor w32 = torch::empty({n}), w16 = torch::empty({n}, torch::kBFloat16);
          adamw_step(options, 3, p, m, v, grad, nthreads == 1 ? &w32 : &w16, isa);
          if (nthreads == 1) {
            CHECK(torch::equal(w32.view(torch::kInt), p.view(torch::kInt)));
          } else {
            CHECK(
                torch::equal(w16.view(torch::kShort), p.to(torch::kBFloat16).view(torch::kShort)));
          }
          if (!want_p.defined()) {
            want_p = p, want_m = m, want_v = v;
            continue;
          }
          CHECK(torch::equal(p.view(torch::kInt), want_p.view(torch::kInt)));
          CHECK(torch::equal(m.view(torch::kInt), want_m.view(torch::kInt)));
          CHECK(torch::equal(v.view(torch::kInt), want_v.view(torch::kInt)));
        }
      }
    }
  }
  at::set_num_threads(threads);
}

TEST_CASE("bad hyperparameters, step counts and tensors are refused") {
  torch::Tensor p = torch::zeros({4}), m = torch::zeros({4}), v = torch::zeros({4});
  const torch::Tensor g = torch::zeros({4});
  fuyou_test::check_usage_error([&] { adamw_step({}, 0, p, m, v, g, nullptr); }, {"step 0"});
  AdamWOptions bad;
  bad.beta1 = 1.0;
  fuyou_test::check_usage_error([&] { adamw_step(bad, 1, p, m, v, g, nullptr); }, {"betas"});
  bad = {};
  bad.lr = -1;
  fuyou_test::check_usage_error([&] { adamw_step(bad, 1, p, m, v, g, nullptr); },
                                {"learning rate"});
  torch::Tensor short_m = torch::zeros({3});
  CHECK_THROWS_AS(adamw_step({}, 1, p, short_m, v, g, nullptr), c10::Error);
  CHECK_THROWS_AS(adamw_step({}, 1, p, m, v, torch::zeros({4}, torch::kDouble), nullptr),
                  c10::Error);
  torch::Tensor strided = torch::zeros({8}).slice(0, 0, 8, 2);
  CHECK_THROWS_AS(adamw_step({}, 1, strided, m, v, g, nullptr), c10::Error);
  CHECK(std::string(cpu_isa_name(detect_cpu_isa())) != "auto");
}
