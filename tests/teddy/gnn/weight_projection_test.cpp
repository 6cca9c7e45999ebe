// The l0 projection keeps exactly the requested count and cuts the smallest magnitudes; random
// masks have exact counts; the distillation loss matches a hand computation.
#include "teddy/gnn/weight_projection.h"

#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cmath>

#include "teddy/gnn/distillation_loss.h"

namespace teddy = sparsetrain::teddy;

namespace {
std::int64_t zeros(const std::vector<at::Tensor>& ts) {
  std::int64_t z = 0;
  for (const auto& t : ts) z += (t == 0).sum().item<std::int64_t>();
  return z;
}
}  // namespace

TEST_CASE("l0 projection zeroes exactly ceil(n*s) entries, the smallest magnitudes") {
  for (double s : {0.0, 0.05, 0.2, 0.5, 0.67, 0.89, 0.99}) {
    torch::manual_seed(1);
    std::vector<at::Tensor> params = {torch::randn({37, 11}), torch::randn({5}),
                                      torch::randn({11, 3})};
    std::vector<at::Tensor> before;
    for (auto& p : params) before.push_back(p.clone());
    teddy::project_l0(params, s);
    const std::int64_t n = 37 * 11 + 5 + 33;
    const auto want = static_cast<std::int64_t>(std::ceil(n * s - 1e-9));
    INFO("s = " << s);
    CHECK(zeros(params) == want);
    // every zeroed |w| is <= every kept |w|; kept values are unchanged
    double max_cut = 0, min_kept = 1e30;
    for (std::size_t i = 0; i < params.size(); ++i) {
      const auto cut = params[i] == 0;
      if (cut.any().item<bool>())
        max_cut = std::max(max_cut, before[i].abs().masked_select(cut).max().item<double>());
      if ((~cut).any().item<bool>()) {
        min_kept = std::min(min_kept, before[i].abs().masked_select(~cut).min().item<double>());
        CHECK(torch::equal(params[i].masked_select(~cut), before[i].masked_select(~cut)));
      }
    }
    CHECK(max_cut <= min_kept);
  }
}

TEST_CASE("l0 projection keeps the exact count when many magnitudes tie") {
  std::vector<at::Tensor> params = {torch::ones({10}), -torch::ones({10}), torch::full({5}, 2.0)};
  teddy::project_l0(params, 0.3);  // ceil(25 * 0.3) = 8 of the 20 tied ±1 entries
  CHECK(zeros(params) == 8);
  CHECK((params[0] == 0).sum().item<std::int64_t>() == 8);  // ties: earlier positions first
  CHECK((params[2] == 2).all().item<bool>());
}

TEST_CASE("l0 projection cuts the same entries in float32 as the float64 path, ties included") {
  // float32 parameters take a float-only path; float64 ones the general one. Same values (exact in
  // both), rounded to a coarse grid so that many magnitudes tie: the same entries must go.
  for (double s : {0.1, 0.5, 0.67, 0.89, 1.0}) {
    torch::manual_seed(2);
    std::vector<at::Tensor> f32 = {(torch::randn({23, 9}) * 4).round() / 4,
                                   (torch::randn({7}) * 4).round() / 4,
                                   (torch::randn({9, 5}) * 4).round() / 4};
    std::vector<at::Tensor> f64;
    for (auto& p : f32) f64.push_back(p.to(torch::kFloat64));
    teddy::project_l0(f32, s);
    teddy::project_l0(f64, s);
    INFO("s = " << s);
    for (std::size_t i = 0; i < f32.size(); ++i) {
      CHECK(torch::equal(f32[i].to(torch::kFloat64), f64[i]));
    }
  }
}

TEST_CASE("zero_count rounds up and validates the range") {
  CHECK(teddy::zero_count(10, 0.2) == 2);
  CHECK(teddy::zero_count(10, 0.21) == 3);
  CHECK(teddy::zero_count(7, 1.0) == 7);
  CHECK_THROWS(teddy::zero_count(10, 1.5));
}

TEST_CASE("random masks zero exactly the requested count and depend on the seed") {
  std::vector<at::Tensor> params = {torch::randn({40, 10}), torch::randn({10, 3})};
  const auto a = teddy::random_masks(params, 0.67, 1);
  const auto b = teddy::random_masks(params, 0.67, 1);
  const auto c = teddy::random_masks(params, 0.67, 2);
  CHECK(zeros(a) == static_cast<std::int64_t>(std::ceil(430 * 0.67)));
  CHECK(torch::equal(a[0], b[0]));
  CHECK_FALSE(torch::equal(a[0], c[0]));
}

TEST_CASE("distillation loss equals a hand-computed KL divided by the node count") {
  // node 0: teacher p = (1/4, 3/4), student p = (1/2, 1/2); node 1: teacher = student.
  const at::Tensor teacher =
      torch::tensor({0.0, std::log(3.0), 1.0, 2.0}, torch::kFloat64).view({2, 2});
  const at::Tensor student = torch::tensor({5.0, 5.0, 1.0, 2.0}, torch::kFloat64).view({2, 2});
  const double kl0 = 0.25 * std::log(0.25 / 0.5) + 0.75 * std::log(0.75 / 0.5);
  CHECK(teddy::distillation_loss(student, teacher).item<double>() ==
        doctest::Approx(kl0 / 2).epsilon(1e-12));
  // temperature 2: logits halved, loss scaled by T^2 = 4
  const at::Tensor t2 =
      torch::tensor({0.0, 2 * std::log(3.0), 0.0, 0.0}, torch::kFloat64).view({2, 2});
  const at::Tensor s2 = torch::zeros({2, 2}, torch::kFloat64);
  CHECK(teddy::distillation_loss(s2, t2, 2.0).item<double>() ==
        doctest::Approx(4 * kl0 / 2).epsilon(1e-12));
}
