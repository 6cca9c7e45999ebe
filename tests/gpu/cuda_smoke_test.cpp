// The CUDA build works end to end: a bf16 matmul on the device agrees with the CPU in fp32, and
// pinned host memory round-trips. Skips (77) where no device is visible, as on CI.
#define DOCTEST_CONFIG_IMPLEMENT
#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cstdio>

TEST_CASE("a bf16 matmul on the GPU matches the CPU within bf16 tolerance") {
  torch::manual_seed(0);
  auto a = torch::randn({256, 512});
  auto b = torch::randn({512, 128});
  auto expected = torch::matmul(a, b);
  auto got =
      torch::matmul(a.to(torch::kCUDA, torch::kBFloat16), b.to(torch::kCUDA, torch::kBFloat16))
          .to(torch::kCPU, torch::kFloat32);
  // bf16 has 8 mantissa bits: relative error per product ~2^-8, summed over 512 terms
  const double rel = ((got - expected).norm() / expected.norm()).item<double>();
  MESSAGE("relative error " << rel);
  CHECK(rel < 1e-2);
}

TEST_CASE("pinned host memory round-trips through the device") {
  auto host = torch::arange(1 << 20, torch::kFloat32).pin_memory();
  CHECK(host.is_pinned());
  auto back = host.to(torch::kCUDA, /*non_blocking=*/true).to(torch::kCPU);
  CHECK(torch::equal(host, back));
}

int main(int argc, char** argv) {
  if (!torch::cuda::is_available()) {
    std::printf("no CUDA device visible: skipping\n");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
