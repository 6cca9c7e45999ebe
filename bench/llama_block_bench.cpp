// llama_block_bench: one Llama block's forward and backward on the CPU tier as the trainers run it
// (gpt_model.h: block_forward without gradients, then block_backward — the forward recomputed but
// down_proj, each piece's backward by hand; llama_model.h), fp32, median of --reps after a warm-up.
// Prints one JSON document; bench/llama_block_vs_torch.py runs it beside PyTorch eager on the same
// shapes and threads.
//   llama_block_bench [--hidden 2048 --heads 32 --kv-heads 8 --intermediate 8192 --batch 1
//                      --seq 256 --reps 5 --threads 0]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "fuyou/model/gpt_model.h"
#include "fuyou/model/model_config.h"
#include "fuyou/model/model_weights.h"

namespace fuyou = sparsetrain::fuyou;

namespace {

double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  const std::size_t k = x.size() / 2;
  return x.size() % 2 ? x[k] : 0.5 * (x[k - 1] + x[k]);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  fuyou::ModelConfig c;
  c.family = fuyou::ModelFamily::kLlama;
  c.name = "bench-block";
  c.n_layer = 1;
  c.vocab = 256;
  c.n_embd = 2048;
  c.n_head = 32;
  c.n_kv_head = 8;
  c.intermediate = 8192;
  c.n_positions = 8192;
  c.rope_theta = 500000.0;
  std::int64_t batch = 1, seq = 256, reps = 5, threads = 0;
  CLI::App app("One Llama block's forward + backward (CPU, fp32): median seconds as JSON");
  app.add_option("--hidden", c.n_embd);
  app.add_option("--heads", c.n_head);
  app.add_option("--kv-heads", c.n_kv_head);
  app.add_option("--intermediate", c.intermediate);
  app.add_option("--batch", batch);
  app.add_option("--seq", seq);
  app.add_option("--reps", reps)->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "torch threads (0: torch's default)");
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));
  c.n_positions = std::max(c.n_positions, seq);
  c.validate();

  const fuyou::ModelWeights w = fuyou::init_model_weights(c, 1, at::TensorOptions());
  const fuyou::BlockWeights& block = w.blocks[0];
  torch::manual_seed(2);
  const at::Tensor x = torch::randn({batch, seq, c.n_embd});
  const at::Tensor g = torch::randn({batch, seq, c.n_embd});
  std::vector<double> forward, backward, total;
  for (std::int64_t r = 0; r <= reps; ++r) {  // rep 0 warms up
    const auto t0 = std::chrono::steady_clock::now();
    {
      torch::NoGradGuard no_grad;
      at::Tensor y = fuyou::block_forward(c, block, x);
    }
    const double f = seconds_since(t0);
    const auto t1 = std::chrono::steady_clock::now();
    const fuyou::BlockGrads grads = fuyou::block_backward(c, block, x, g);
    const double b = seconds_since(t1);
    if (r == 0) continue;
    forward.push_back(f);
    backward.push_back(b);
    total.push_back(f + b);
  }
  nlohmann::json out = {
      {"bench", "llama_block_bench"},
      {"shape",
       {{"hidden", c.n_embd},
        {"heads", c.n_head},
        {"kv_heads", c.n_kv_head},
        {"intermediate", c.intermediate},
        {"batch", batch},
        {"seq", seq}}},
      {"threads", at::get_num_threads()},
      {"block_params", c.block_param_count()},
      {"samples_s", {{"forward", forward}, {"backward", backward}, {"total", total}}},
      {"median_s",
       {{"forward", median(forward)}, {"backward", median(backward)}, {"total", median(total)}}}};
  std::cout << out.dump(1) << "\n";
  return 0;
}
