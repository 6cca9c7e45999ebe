// Block activations' names, sizes and recompute costs (see block_activations.h).
#include "fuyou/model/block_activations.h"

#include <bitset>
#include <sstream>

#include "common/error.h"

namespace sparsetrain::fuyou {

namespace {

constexpr const char* kNames[kBlockActivations] = {"ln1", "qkv", "attn", "resid",
                                                   "ln2", "fc",  "gelu"};

std::string known_names() {
  std::string out;
  for (const char* name : kNames) out += std::string(out.empty() ? "" : ",") + name;
  return out;
}

}  // namespace

const char* block_activation_name(int activation) {
  ST_ASSERT(activation >= 0 && activation < kBlockActivations,
            "block activation " + std::to_string(activation));
  return kNames[activation];
}

int ActivationSet::count() const { return static_cast<int>(std::bitset<32>(bits_).count()); }

std::string ActivationSet::to_string() const {
  if (empty()) return "none";
  std::string out;
  for (int a = 0; a < kBlockActivations; ++a) {
    if (has(a)) out += std::string(out.empty() ? "" : ",") + kNames[a];
  }
  return out;
}

ActivationSet parse_activation_set(const std::string& text) {
  if (text == "all") return ActivationSet::all();
  if (text == "none") return {};
  const std::string hint = "name the kept tensors from " + known_names() + ", or all, or none";
  if (text.empty()) throw common::UsageError("an empty activation list", hint);
  ActivationSet set;
  std::stringstream in(text);
  std::string name;
  while (std::getline(in, name, ',')) {
    int found = -1;
    for (int a = 0; a < kBlockActivations; ++a) {
      if (name == kNames[a]) found = a;
    }
    if (found < 0) {
      throw common::UsageError("unknown block activation '" + name + "' in '" + text + "'", hint);
    }
    if (set.has(found)) {
      throw common::UsageError("block activation '" + name + "' named twice in '" + text + "'",
                               hint);
    }
    set = set.with(found);
  }
  if (text.back() == ',') throw common::UsageError("an empty name in '" + text + "'", hint);
  return set;
}

std::int64_t activation_floats_per_token(const ModelConfig& config, int activation, bool cuda) {
  const std::int64_t c = config.n_embd;
  switch (activation) {
    case kLn1Out:
    case kLn2Out:
      return c + 2;
    case kQkv:
      return 3 * c;
    case kAttnOut:
      return cuda ? c : c + config.n_head;
    case kAttnResidual:
      return c;
    case kMlpPreGelu:
    case kMlpHidden:
      return 4 * c;
    default:
      ST_ASSERT(false, "block activation " + std::to_string(activation));
  }
  return 0;
}

std::int64_t activation_set_floats_per_token(const ModelConfig& config, ActivationSet set,
                                             bool cuda) {
  std::int64_t floats = 0;
  for (int a = 0; a < kBlockActivations; ++a) {
    if (set.has(a)) floats += activation_floats_per_token(config, a, cuda);
  }
  return floats;
}

double activation_recompute_flops_per_token(const ModelConfig& config, std::int64_t seq,
                                            int activation, bool cuda) {
  if (config.llama()) return 0;  // the sets are GPT-2 blocks' tensors
  const double c = static_cast<double>(config.n_embd);
  switch (activation) {
    case kQkv:
      return 6 * c * c;
    case kAttnOut:
      return 4 * c * static_cast<double>(seq);
    case kAttnResidual:
      return 2 * c * c;
    case kMlpPreGelu:
      return 8 * c * c;
    default:
      return 0;
  }
}

double block_recompute_flops_per_token(const ModelConfig& config, std::int64_t seq,
                                       ActivationSet kept, bool cuda) {
  if (config.llama()) {  // the whole forward again, under autograd (llama_model.h)
    return 2 * static_cast<double>(config.block_param_count()) +
           4 * static_cast<double>(config.n_head * config.head_dim() * seq);
  }
  // CUDA: the attention's autograd graph records its forward once more, whatever is kept.
  double flops = cuda ? 4 * static_cast<double>(config.n_embd * seq) : 0;
  for (int a = 0; a < kBlockActivations; ++a) {
    if (!kept.has(a)) flops += activation_recompute_flops_per_token(config, seq, a, cuda);
  }
  return flops;
}

std::vector<std::vector<std::int64_t>> activation_shapes(const ModelConfig& config, int activation,
                                                         std::int64_t batch, std::int64_t seq,
                                                         bool cuda) {
  const std::int64_t c = config.n_embd;
  switch (activation) {
    case kLn1Out:
    case kLn2Out:
      return {{batch, seq, c}, {batch, seq, 1}, {batch, seq, 1}};
    case kQkv:
      return {{batch, seq, 3 * c}};
    case kAttnOut:
      if (cuda) return {{batch, seq, c}};
      return {{batch, seq, c}, {batch, config.n_head, seq}};
    case kAttnResidual:
      return {{batch, seq, c}};
    case kMlpPreGelu:
    case kMlpHidden:
      return {{batch, seq, 4 * c}};
    default:
      ST_ASSERT(false, "block activation " + std::to_string(activation));
  }
  return {};
}

std::uint64_t activation_set_bytes(const ModelConfig& config, ActivationSet set, std::int64_t batch,
                                   std::int64_t seq, bool cuda) {
  const std::uint64_t align = cuda ? kActivationAlignCuda : kActivationAlignCpu;
  std::uint64_t bytes = 0;
  for (int a = 0; a < kBlockActivations; ++a) {
    if (!set.has(a)) continue;
    const auto shapes = activation_shapes(config, a, batch, seq, cuda);
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      std::uint64_t numel = 1;
      for (std::int64_t d : shapes[i]) numel *= static_cast<std::uint64_t>(d);
      const bool statistic = (a == kLn1Out || a == kLn2Out) && i > 0;
      const std::uint64_t element = cuda && !statistic ? 2 : 4;
      bytes += (numel * element + align - 1) / align * align;
    }
  }
  return bytes;
}

PieceFlags recompute_pieces(const ModelConfig& config, ActivationSet kept) {
  if (config.llama()) return {true, true, true, true, false};
  return {!kept.has(kLn1Out) || !kept.has(kQkv), !kept.has(kAttnResidual),
          !kept.has(kLn2Out) || !kept.has(kMlpPreGelu), false, false};
}

}  // namespace sparsetrain::fuyou
