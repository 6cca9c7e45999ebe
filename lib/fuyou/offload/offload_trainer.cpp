// OffloadTrainer (see offload_trainer.h).
#include "fuyou/offload/offload_trainer.h"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <future>
#include <sstream>

#include "common/error.h"
#include "common/io/aligned_buffer.h"
#include "common/log.h"
#include "fuyou/offload/block_stream.h"
#include "fuyou/offload/cuda_transfer.h"
#include "fuyou/model/gpt_model.h"
#include "fuyou/offload/input_stash.h"
#include "fuyou/offload/offload_internals.h"
#include "fuyou/offload/optimizer_stage.h"
#include "fuyou/offload/state_pieces.h"
#include "fuyou/store/tensor_store.h"

namespace sparsetrain::fuyou {

namespace {

using common::io::AlignedBuffer;

// Same as gpt_model.cpp's accumulate: the in-memory trainer's exact operation on its accumulators.
void accumulate(at::Tensor& acc, const at::Tensor& g) {
  if (g.defined()) acc.add_(g.to(acc.options()));
}

// The optimizer unit of a canonical tensor name (offload_plan.h's numbering).
std::int64_t unit_of(const ModelConfig& config, const std::string& name) {
  if (name.rfind("h.", 0) == 0) return 1 + std::stoll(name.substr(2));
  if (name.rfind("ln_f.", 0) == 0) return config.n_layer + 1;
  return 0;
}

std::uint64_t free_bytes_of(const std::string& dir) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) {
    common::throw_path_error("cannot inspect", dir, errno,
                             "pass --ssd existing, writable directories");
  }
  return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

std::uint64_t file_bytes_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

}  // namespace

OffloadPlan plan_offload_run(const ModelConfig& config, const TrainOptions& train,
                             const OffloadOptions& options) {
  if (options.ssd_dirs.empty()) {
    throw common::UsageError("the offloaded trainer needs --ssd directories",
                             "pass --ssd DIR[,DIR...]");
  }
  OffloadBudgets budgets = options.budgets;
  budgets.ssd_free_bytes = 0;
  budgets.ssd_used_bytes = 0;
  for (std::size_t i = 0; i < options.ssd_dirs.size(); ++i) {
    budgets.ssd_free_bytes += free_bytes_of(options.ssd_dirs[i]);
    if (options.resume) {
      budgets.ssd_used_bytes +=
          file_bytes_of(options.ssd_dirs[i] + "/" + TensorStore::data_file_name(i));
    }
  }
  budgets.store_extent_bytes = options.store_extent_bytes;
  if (options.commit_every < 1) {
    throw common::UsageError(
        "--commit-every must be at least 1, got " + std::to_string(options.commit_every),
        "commit the store every step with --commit-every 1");
  }
  OffloadShape shape;
  shape.micro_batch = train.micro_batch;
  shape.seq = train.seq;
  shape.accum = train.accum;
  shape.grad_clip = train.grad_clip > 0;
  shape.loss_chunk_rows = train.loss_chunk_rows;
  shape.cuda = train.device == TrainDevice::kCuda;
  shape.commit_every = options.commit_every;
  shape.block_grads_in_cpu = options.block_grads_in_cpu;
  if (options.state_piece_floats < 0) {
    throw common::UsageError(
        "state piece of " + std::to_string(options.state_piece_floats) + " floats",
        "pass a positive piece size, or 0 for the default");
  }
  shape.state_piece_floats = state_piece_floats(
      options.store_extent_bytes,
      options.state_piece_floats > 0 ? options.state_piece_floats : kDefaultStatePieceFloats);
  return plan_offload(config, shape, budgets, options.rates);
}

namespace {

// `weights` as a source (checked first, unless resuming: then it is never visited).
WeightSource source_of(const ModelConfig& config, GptWeights weights, bool resume) {
  if (!resume) check_weight_shapes(config, weights);
  auto held = std::make_shared<GptWeights>(std::move(weights));
  return [held](const WeightVisitor& visit) {
    for (const auto& [name, tensor] : held->named()) visit(name, *tensor);
  };
}

}  // namespace

OffloadTrainer::OffloadTrainer(ModelConfig config, GptWeights initial, TrainOptions train,
                               OffloadOptions options)
    : OffloadTrainer(ModelConfig(config), source_of(config, std::move(initial), options.resume),
                     train, OffloadOptions(options)) {}

OffloadTrainer::OffloadTrainer(ModelConfig config, WeightSource initial, TrainOptions train,
                               OffloadOptions options)
    : config_(std::move(config)),
      train_(train),
      options_(std::move(options)),
      impl_(std::make_unique<Impl>()) {
  config_.validate();
  check_train_options(config_, train_);
  Impl& impl = *impl_;
  impl.cuda = train_.device == TrainDevice::kCuda;
  if (impl.cuda && !torch::cuda::is_available()) {
    throw common::EnvironmentError("--device cuda: no CUDA device is visible",
                                   "run on a GPU machine or pass --device cpu");
  }
  plan_ = plan_offload_run(config_, train_, options_);
  impl.streaming = plan_.stream_slots > 0;
  // Streamed blocks keep only their shapes here (meta tensors: no memory).
  const auto meta32 = at::TensorOptions().dtype(at::kFloat).device(at::kMeta);

  // Compute weights (compute tier: fp32 CPU, or bf16 GPU) and the unit table over them.
  const auto cpu32 = at::TensorOptions().dtype(at::kFloat).device(at::kCPU);
  const auto compute_options = impl.cuda
                                   ? at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA)
                                   : cpu32;
  if (options_.resume) {
    compute_.wte = at::zeros({config_.vocab, config_.n_embd}, compute_options);
    compute_.wpe = at::zeros({config_.n_positions, config_.n_embd}, compute_options);
    compute_.blocks.resize(static_cast<std::size_t>(config_.n_layer));
    for (BlockWeights& block : compute_.blocks) {
      for (int i = 0; i < kBlockTensorCount; ++i) {
        block[i] = impl.streaming ? at::empty(block_tensor_shape(config_, i), meta32)
                                  : at::zeros(block_tensor_shape(config_, i), compute_options);
      }
    }
    compute_.ln_f_weight = at::zeros({config_.n_embd}, compute_options);
    compute_.ln_f_bias = at::zeros({config_.n_embd}, compute_options);
  } else {
    // Shapes only until init_store visits the source: it sets the resident tensors as they
    // arrive; streamed blocks stay shape-only.
    compute_.wte = at::empty({config_.vocab, config_.n_embd}, meta32);
    compute_.wpe = at::empty({config_.n_positions, config_.n_embd}, meta32);
    compute_.blocks.resize(static_cast<std::size_t>(config_.n_layer));
    for (BlockWeights& block : compute_.blocks) {
      for (int i = 0; i < kBlockTensorCount; ++i)
        block[i] = at::empty(block_tensor_shape(config_, i), meta32);
    }
    compute_.ln_f_weight = at::empty({config_.n_embd}, meta32);
    compute_.ln_f_bias = at::empty({config_.n_embd}, meta32);
  }
  const std::int64_t units = unit_count(config_);
  impl.units.resize(static_cast<std::size_t>(units));
  for (auto& [name, tensor] : compute_.named()) {
    const auto unit = static_cast<std::size_t>(unit_of(config_, name));
    impl.units[unit].names.push_back(name);
    impl.units[unit].compute.push_back(tensor);
  }
  impl.piece_floats = plan_.state_piece_floats;
  for (std::int64_t u = 0; u < units; ++u) {
    UnitTensors& unit = impl.units[static_cast<std::size_t>(u)];
    unit.padded = unit_padded_params(config_, u);
    unit.pieces = unit_pieces(unit.padded, impl.piece_floats);
    for (const at::Tensor* w : unit.compute) unit.numels.push_back(w->numel());
  }
  impl.order.push_back(config_.n_layer + 1);
  for (std::int64_t l = config_.n_layer; l >= 1; --l) impl.order.push_back(l);
  impl.order.push_back(0);

  // Buffers: states in RAM or two staging slots of one piece; gradient accumulators.
  const std::size_t slot_bytes = 12 * static_cast<std::size_t>(plan_.largest_piece_floats);
  if (plan_.states_in_cpu) {
    for (const UnitTensors& unit : impl.units) {
      impl.cpu_states.emplace_back(12 * static_cast<std::size_t>(unit.padded), /*pin=*/false);
    }
  } else {
    for (auto& slot : impl.staging) slot = AlignedBuffer(slot_bytes);
  }
  if (impl.cuda) {
    // One state piece each (the largest): the transfers go piece by piece.
    const std::size_t unit_floats = static_cast<std::size_t>(plan_.largest_piece_floats);
    for (int i = 0; i < 2; ++i) {
      impl.grad_slots[i] = AlignedBuffer(4 * unit_floats, /*pin=*/true);
      impl.weight_pinned[i] = AlignedBuffer(2 * unit_floats, /*pin=*/true);
    }
  }
  impl.meta = AlignedBuffer(kMetaLen * sizeof(std::int64_t));
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(compute_options.device());
  impl.wte_grad = at::zeros_like(compute_.wte, f32);
  impl.wpe_grad = at::zeros_like(compute_.wpe, f32);
  impl.lnf_w_grad = at::zeros_like(compute_.ln_f_weight, f32);
  impl.lnf_b_grad = at::zeros_like(compute_.ln_f_bias, f32);
  impl.host_grads = plan_.block_grads_in_cpu;
  impl.pool = plan_.grad_block_slots < config_.n_layer || impl.host_grads;
  impl.block_grads.resize(static_cast<std::size_t>(plan_.grad_block_slots));
  impl.grads_in_store = plan_.block_grads_in_store;
  if (impl.grads_in_store) {
    const std::size_t piece_bytes = 4 * static_cast<std::size_t>(impl.units[1].pieces[0].floats);
    impl.grad_read = AlignedBuffer(piece_bytes, /*pin=*/false);
    if (!impl.cuda) {
      for (auto& slot : impl.grad_slots) slot = AlignedBuffer(piece_bytes, /*pin=*/false);
    }
  } else if (impl.host_grads) {
    impl.host_block_grads.resize(static_cast<std::size_t>(config_.n_layer));
    for (BlockWeights& block : impl.host_block_grads) {
      for (int i = 0; i < kBlockTensorCount; ++i)
        block[i] = at::zeros(block_tensor_shape(config_, i), cpu32);
    }
  }
  if (impl.host_grads) impl.block_norm_terms.resize(static_cast<std::size_t>(config_.n_layer));
  for (BlockWeights& block : impl.block_grads) {
    for (int i = 0; i < kBlockTensorCount; ++i)
      block[i] = at::zeros(block_tensor_shape(config_, i), f32);
  }

  // A store this constructor creates is taken away again if it throws before it returns (a bad
  // weight source, a full disk while reserving space, a failed allocation): nothing in it is worth
  // keeping, and the same command can then run once the cause is fixed. The workers that go
  // through the store stop first (the destructor, which does that, does not run).
  struct NewStoreGuard {
    OffloadTrainer& t;
    bool created = false;
    const int unwinding = std::uncaught_exceptions();
    ~NewStoreGuard() {
      if (!created || std::uncaught_exceptions() == unwinding) return;
      t.impl_->stream.reset();
      t.impl_->stash.reset();
      t.impl_->gpu_stash.reset();
      t.store_.reset();
      TensorStore::remove_new(t.options_.ssd_dirs);
    }
  } new_store{*this};
  StoreOptions store_options;
  store_options.extent_bytes = options_.store_extent_bytes;
  if (options_.resume) {
    store_ = TensorStore::open(options_.ssd_dirs, store_options);
    // The store keeps the extent it was made with; pieces must fill whole extents of it
    // (state_pieces.h: no two in-flight writes may share one).
    if (12 * static_cast<std::uint64_t>(impl.piece_floats) % store_->extent_bytes() != 0) {
      throw common::RunError("the store in '" + options_.ssd_dirs[0] + "' has extents of " +
                                 std::to_string(store_->extent_bytes()) +
                                 " bytes, which pieces of " + std::to_string(impl.piece_floats) +
                                 " floats do not fill",
                             "resume with the store extent the run was started with");
    }
    open_store();
  } else {
    store_ = TensorStore::create(options_.ssd_dirs, store_options);
    new_store.created = true;
    init_store(initial);
  }
  if (impl.grads_in_store) {
    for (std::int64_t l = 0; l < config_.n_layer; ++l) {
      if (!store_->contains(grad_store_name(l))) {
        store_->define(grad_store_name(l), StoreDType::kF32, {impl.units[1].padded});
      }
    }
  }
  if (plan_.inputs_in_store) {
    const std::int64_t floats = train_.micro_batch * train_.seq * config_.n_embd;
    for (std::int64_t l = 0; l < config_.n_layer; ++l) {
      if (!store_->contains(input_store_name(l))) {
        store_->define(input_store_name(l), StoreDType::kF32, {floats});
      }
    }
    const std::uint64_t bytes = 4 * static_cast<std::uint64_t>(floats);
    impl.stash = std::make_unique<InputStash>(
        config_.n_layer, std::vector<std::int64_t>{train_.micro_batch, train_.seq, config_.n_embd},
        2,
        [this, bytes](std::int64_t layer, const float* src) {
          store_->write(input_store_name(layer), src, 0, bytes).get();
        },
        [this, bytes](std::int64_t layer, float* dst) {
          store_->read(input_store_name(layer), dst, 0, bytes).get();
        });
  }
  if (plan_.inputs_in_cpu) {
    impl.gpu_stash = std::make_unique<CudaInputStash>(
        config_.n_layer, std::vector<std::int64_t>{train_.micro_batch, train_.seq, config_.n_embd});
  }
  // CPU tier: a block's fp32 weights are the master segments of its state pieces, gathered into
  // its slot `dst` (padded floats) from RAM, or read from the store, on the stream's loader thread.
  auto gather_master = [this](std::int64_t unit, float* dst) {
    Impl& im = *impl_;
    const UnitTensors& u = im.units[static_cast<std::size_t>(unit)];
    std::vector<std::shared_future<void>> reads;
    for (const StatePiece& piece : u.pieces) {
      const std::size_t bytes = 4 * static_cast<std::size_t>(piece.floats);
      if (plan_.states_in_cpu) {
        std::memcpy(dst + piece.first,
                    reinterpret_cast<const float*>(
                        im.cpu_states[static_cast<std::size_t>(unit)].data()) +
                        3 * piece.first,
                    bytes);
      } else {
        reads.push_back(store_->read(unit_store_name(unit), dst + piece.first,
                                     piece.byte_offset(im.piece_floats), bytes));
      }
    }
    for (auto& read : reads) read.get();
  };
  if (impl.streaming && impl.cuda) {
    // The same, piece by piece, converted to bf16 and uploaded (cuda_transfer.h): a piece's master
    // segment from RAM without a copy, or read from the store into the slots' piece buffer.
    impl.stream = std::make_unique<BlockStream>(make_cuda_block_slots(
        config_, plan_.stream_slots, impl.piece_floats, !plan_.states_in_cpu,
        [this](std::int64_t block, const StatePiece& piece, float* scratch) -> const float* {
          const auto unit = static_cast<std::size_t>(1 + block);
          if (plan_.states_in_cpu) {
            return reinterpret_cast<const float*>(impl_->cpu_states[unit].data()) + 3 * piece.first;
          }
          store_->read(unit_store_name(1 + block), scratch, piece.byte_offset(impl_->piece_floats),
                       4 * static_cast<std::uint64_t>(piece.floats))
              .get();
          return scratch;
        }));
  } else if (impl.streaming) {
    impl.stream = std::make_unique<BlockStream>(
        config_, plan_.stream_slots,
        [gather_master](std::int64_t block, float* dst) { gather_master(1 + block, dst); });
  }
}

OffloadTrainer::~OffloadTrainer() {
  // The stream's loader and the stash's worker go through store_: stop them first.
  if (impl_) {
    impl_->stream.reset();
    impl_->stash.reset();
    impl_->gpu_stash.reset();
  }
}

void OffloadTrainer::init_store(const WeightSource& initial) {
  Impl& impl = *impl_;
  for (std::int64_t u = 0; u < unit_count(config_); ++u) {
    store_->define(unit_store_name(u), StoreDType::kF32,
                   {3 * impl.units[static_cast<std::size_t>(u)].padded});
  }
  store_->define(kMetaName, StoreDType::kI64, {kMetaLen});
  // The tensors arrive in unit order and, within a unit, in its tensor order: each fills the
  // master segments of the unit's pieces from where the previous one ended, and a piece goes to
  // the store as soon as its last tensor float is in (m = v = 0). Through one piece of scratch
  // (states in the store; zeroed after each piece), or straight into the states in RAM (zero-filled
  // when allocated).
  AlignedBuffer scratch;
  if (!plan_.states_in_cpu) scratch = AlignedBuffer(impl.staging[0].size(), /*pin=*/false);
  const auto cpu32 = at::TensorOptions().dtype(at::kFloat).device(at::kCPU);
  const auto named = compute_.named();
  std::size_t next = 0;       // index into `named` of the tensor expected next
  std::int64_t filled = 0;    // floats of the current unit written so far
  std::size_t piece_at = 0;   // the current unit's piece being filled
  auto piece_base = [&](std::size_t u, const StatePiece& piece) {
    return plan_.states_in_cpu
               ? reinterpret_cast<float*>(impl.cpu_states[u].data()) + 3 * piece.first
               : reinterpret_cast<float*>(scratch.data());
  };
  auto flush = [&](std::size_t u, const StatePiece& piece) {
    float* base = piece_base(u, piece);
    store_->write(unit_store_name(static_cast<std::int64_t>(u)), base,
                  piece.byte_offset(impl.piece_floats), 12 * static_cast<std::size_t>(piece.floats))
        .get();
    if (!plan_.states_in_cpu) std::memset(base, 0, scratch.size());  // m = v = 0, padding 0
  };
  initial([&](const std::string& name, const at::Tensor& given) {
    if (next >= named.size() || name != named[next].first) {
      throw common::UsageError(
          "initial weights: got tensor '" + name + "' where '" +
              (next < named.size() ? named[next].first : std::string("nothing more")) +
              "' was expected",
          "pass every GPT weight once, in GptWeights::named() order");
    }
    at::Tensor* compute = named[next].second;
    if (!given.defined() || given.sizes() != compute->sizes()) {
      std::ostringstream shapes;
      if (given.defined()) {
        shapes << given.sizes() << " instead of " << compute->sizes();
      } else {
        shapes << "(undefined) instead of " << compute->sizes();
      }
      throw common::UsageError("initial weights: '" + name + "' has shape " + shapes.str(),
                               "check --model against the weights");
    }
    const at::Tensor t = given.to(cpu32).contiguous();  // no copy when already so
    const auto u = static_cast<std::size_t>(unit_of(config_, name));
    const UnitTensors& unit = impl.units[u];
    if (name == unit.names.front()) {
      filled = 0;
      piece_at = 0;
    }
    // Into the master segments of the pieces it spans.
    const float* src = t.data_ptr<float>();
    std::int64_t left = t.numel();
    while (left > 0) {
      const StatePiece& piece = unit.pieces[piece_at];
      const std::int64_t n = std::min(left, piece.first + piece.floats - filled);
      std::memcpy(piece_base(u, piece) + (filled - piece.first), src,
                  static_cast<std::size_t>(n) * sizeof(float));
      src += n;
      left -= n;
      filled += n;
      if (filled == piece.first + piece.floats) {
        flush(u, piece);
        ++piece_at;
      }
    }
    // The unit's last piece, unless its data ended on the piece's end (no padding) and it went above.
    if (name == unit.names.back() && piece_at < unit.pieces.size()) flush(u, unit.pieces[piece_at]);
    // The resident compute weights: the CPU tier keeps this very tensor, CUDA a bf16 copy.
    if (!(impl.streaming && u >= 1 && u <= static_cast<std::size_t>(config_.n_layer))) {
      *compute = impl.cuda ? t.to(at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA)) : t;
    }
    ++next;
  });
  if (next != named.size()) {
    throw common::UsageError("initial weights: '" + named[next].first + "' is missing",
                             "pass every GPT weight once, in GptWeights::named() order");
  }
  auto* meta = reinterpret_cast<std::int64_t*>(impl.meta.data());
  meta[kMetaFormat] = kMetaFormatVersion;
  meta[kMetaStep] = 0;
  meta[kMetaSeed] = static_cast<std::int64_t>(train_.seed);
  meta[kMetaBatch] = train_.micro_batch;
  meta[kMetaSeq] = train_.seq;
  meta[kMetaAccum] = train_.accum;
  meta[kMetaLayers] = config_.n_layer;
  meta[kMetaHidden] = config_.n_embd;
  meta[kMetaPieceFloats] = impl.piece_floats;
  store_->write(kMetaName, meta, 0, kMetaLen * sizeof(std::int64_t)).get();
  store_->commit();
  first_step_ = 1;
}

void OffloadTrainer::open_store() {
  Impl& impl = *impl_;
  auto* meta = reinterpret_cast<std::int64_t*>(impl.meta.data());
  if (!store_->contains(kMetaName)) {
    throw common::UsageError("the store in '" + options_.ssd_dirs[0] + "' holds no training run",
                             "drop --resume to start a new run");
  }
  // An older layout (format 1) had a shorter train.state: refuse it by its format, not its size.
  const std::uint64_t meta_bytes = store_->info(kMetaName).bytes;
  if (meta_bytes < 8) {
    throw common::RunError("the store's train.state is " + std::to_string(meta_bytes) + " bytes",
                           "start a new run in an empty --ssd directory");
  }
  store_->read(kMetaName, meta, 0, std::min<std::uint64_t>(meta_bytes, kMetaLen * sizeof(std::int64_t)),
               /*verify=*/true)
      .get();
  const std::pair<const char*, std::pair<std::int64_t, std::int64_t>> checks[] = {
      {"--seed", {meta[kMetaSeed], static_cast<std::int64_t>(train_.seed)}},
      {"--micro-batch", {meta[kMetaBatch], train_.micro_batch}},
      {"--seq", {meta[kMetaSeq], train_.seq}},
      {"--accum", {meta[kMetaAccum], train_.accum}},
      {"--model layers", {meta[kMetaLayers], config_.n_layer}},
      {"--model hidden", {meta[kMetaHidden], config_.n_embd}},
      {"--state-piece (floats)", {meta[kMetaPieceFloats], impl.piece_floats}}};
  if (meta[kMetaFormat] != kMetaFormatVersion || meta_bytes != kMetaLen * sizeof(std::int64_t)) {
    throw common::RunError(
        "the store's train.state has format " + std::to_string(meta[kMetaFormat]),
        "start a new run in an empty --ssd directory");
  }
  for (const auto& [flag, values] : checks) {
    if (values.first != values.second) {
      throw common::UsageError(std::string("--resume: the stored run has ") + flag + " " +
                                   std::to_string(values.first) + ", this run " +
                                   std::to_string(values.second),
                               "resume with the flags of the stored run");
    }
  }
  first_step_ = meta[kMetaStep] + 1;
  AlignedBuffer scratch;
  if (!plan_.states_in_cpu) scratch = AlignedBuffer(impl.staging[0].size(), /*pin=*/false);
  for (std::size_t u = 0; u < impl.units.size(); ++u) {
    const UnitTensors& unit = impl.units[u];
    const bool streamed_unit =
        impl.streaming && u >= 1 && u <= static_cast<std::size_t>(config_.n_layer);
    for (const StatePiece& piece : unit.pieces) {
      float* base = plan_.states_in_cpu
                        ? reinterpret_cast<float*>(impl.cpu_states[u].data()) + 3 * piece.first
                        : reinterpret_cast<float*>(scratch.data());
      store_->read(unit_store_name(static_cast<std::int64_t>(u)), base,
                   piece.byte_offset(impl.piece_floats), 12 * static_cast<std::size_t>(piece.floats),
                   /*verify=*/true)
          .get();
      if (streamed_unit) continue;  // its weights come from the stream
      for (const TensorSpan& span : piece_spans(unit.numels, piece)) {
        flat_slice(*unit.compute[span.tensor], span.tensor_offset, span.floats)
            .copy_(float_span(base + span.piece_offset, span.floats));
      }
    }
  }
}

GptWeights OffloadTrainer::read_master() {
  GptWeights out = compute_;  // shapes only: every tensor is replaced below
  for (auto& [name, t] : out.named()) {
    *t = at::empty(t->sizes(), at::TensorOptions().dtype(at::kFloat).device(at::kCPU));
  }
  std::map<std::string, at::Tensor*> by_name;
  for (auto& [name, t] : out.named()) by_name[name] = t;
  Impl& impl = *impl_;
  // The master segment of each piece, through one piece-sized buffer.
  AlignedBuffer buffer(
      4 * static_cast<std::size_t>(plan_.largest_piece_floats),
      /*pin=*/false);
  auto* base = reinterpret_cast<float*>(buffer.data());
  for (std::size_t u = 0; u < impl.units.size(); ++u) {
    const UnitTensors& unit = impl.units[u];
    for (const StatePiece& piece : unit.pieces) {
      store_->read(unit_store_name(static_cast<std::int64_t>(u)), base,
                   piece.byte_offset(impl.piece_floats), 4 * static_cast<std::size_t>(piece.floats),
                   /*verify=*/true)
          .get();
      for (const TensorSpan& span : piece_spans(unit.numels, piece)) {
        flat_slice(*by_name.at(unit.names[span.tensor]), span.tensor_offset, span.floats)
            .copy_(float_span(base + span.piece_offset, span.floats));
      }
    }
  }
  return out;
}

TrainResult OffloadTrainer::train(const TokenData& train_data, const TokenData& valid_data,
                                  const std::function<void(const StepReport&)>& on_step) {
  Impl& impl = *impl_;
  TrainResult result;
  const std::int64_t tokens_per_step = train_.micro_batch * train_.seq * train_.accum;
  const double flops_per_token = config_.train_flops_per_token(train_.seq);
  const std::int64_t layers = config_.n_layer;
  const bool clip = train_.grad_clip > 0;
  common::PhaseTimes& cp = stats_.compute_phases;
  // A streamed block for the compute thread, and the end of its use.
  auto block_at = [&](std::int64_t l) -> const BlockWeights& {
    return impl.streaming ? impl.stream->acquire(l) : compute_.blocks[static_cast<std::size_t>(l)];
  };
  auto done_with_block = [&] {
    if (impl.streaming) impl.stream->release();
  };
  auto eval_scope = [&] {
    auto t = result.phases.scope("eval");
    if (!impl.streaming) return evaluate_loss(config_, compute_, valid_data, train_);
    // evaluate_loss / gpt_loss, with the blocks streamed.
    torch::NoGradGuard no_grad;
    impl.stream->start(BlockStream::forward_sequence(layers, train_.eval_batches));
    double sum = 0;
    for (std::int64_t i = 0; i < train_.eval_batches; ++i) {
      auto [x, y] = validation_batch(valid_data, train_, i);
      at::Tensor h = embed_forward(compute_, x);
      for (std::int64_t l = 0; l < layers; ++l) {
        h = block_forward(config_, block_at(l), h);
        done_with_block();
      }
      sum += lm_loss(config_, compute_, h, y, train_.loss_chunk_rows);
    }
    return sum / static_cast<double>(train_.eval_batches);
  };
  if (first_step_ == 1) result.val_losses.emplace_back(0, eval_scope());
  OptimizerStage stage(*this);
  const double grad_scale = 1.0 / static_cast<double>(train_.accum);
  for (std::int64_t step = first_step_; step <= train_.steps; ++step) {
    common::check_interrupt();
    common::Timer step_timer;
    StepReport report;
    report.step = step;
    report.lr = lr_at_step(train_, step);
    stage.start_step(step, report.lr);  // the optimizer thread starts prefetching states now
    if (impl.streaming) impl.stream->start(BlockStream::training_sequence(layers, train_.accum));
    impl.in_backward.store(true);
    impl.wte_grad.zero_();
    impl.wpe_grad.zero_();
    impl.lnf_w_grad.zero_();
    impl.lnf_b_grad.zero_();
    if (!impl.pool) {
      for (BlockWeights& block : impl.block_grads) {
        for (at::Tensor& g : block.tensors) g.zero_();
      }
    }
    // Squared-norm terms per tensor, by unit, summed in named() order as the in-memory trainer
    // does.
    std::vector<std::vector<at::Tensor>> norm_terms(impl.units.size());
    auto add_norm_terms = [&](std::int64_t unit, const std::vector<at::Tensor>& grads) {
      for (const at::Tensor& g : grads) {
        norm_terms[static_cast<std::size_t>(unit)].push_back(g.pow(2).sum().to(at::kDouble));
      }
    };
    std::vector<std::vector<at::Tensor>> deferred(impl.units.size());  // clip: unit grads
    auto finish_unit = [&](std::int64_t unit, std::vector<at::Tensor> grads, int pool_slot) {
      if (clip) {
        deferred[static_cast<std::size_t>(unit)] = std::move(grads);
        return;
      }
      add_norm_terms(unit, grads);
      // CUDA: the optimizer's download waits for this point of the compute stream, not the host.
      stage.submit({unit, std::move(grads), 1.0, false, pool_slot,
                    impl.cuda ? mark_compute_stream() : CudaMark{}});
    };
    double loss_sum = 0;
    for (std::int64_t k = 0; k < train_.accum; ++k) {
      const bool last = k + 1 == train_.accum;
      at::Tensor x, y;
      {
        auto t = result.phases.scope("data");
        std::tie(x, y) = train_data.batch(train_.seed, (step - 1) * train_.accum + k,
                                          train_.micro_batch, train_.seq);
      }
      std::vector<at::Tensor> inputs;  // inputs[l]: block l's input [B, T, C]
      at::Tensor h;
      {
        auto t = cp.scope("forward");
        torch::NoGradGuard no_grad;
        h = embed_forward(compute_, x);
        for (std::int64_t l = 0; l < layers; ++l) {
          if (impl.stash) {
            impl.stash->push(l, h);
          } else if (impl.gpu_stash) {
            impl.gpu_stash->push(l, h);
          } else {
            inputs.push_back(h);
          }
          h = block_forward(config_, block_at(l), h);
          done_with_block();
        }
      }
      auto t_backward = std::make_unique<common::PhaseTimes::Scope>(cp, "backward");
      LmLossBackward head =
          lm_loss_backward(config_, compute_, h, y, grad_scale, train_.loss_chunk_rows);
      h = at::Tensor();
      accumulate(impl.lnf_w_grad, head.ln_f_weight_grad);
      accumulate(impl.lnf_b_grad, head.ln_f_bias_grad);
      accumulate(impl.wte_grad, head.wte_grad);
      loss_sum += head.loss;
      if (last) {
        // Checked before any update is handed over, so a diverged step never reaches the store.
        report.loss = loss_sum / static_cast<double>(train_.accum);
        if (!std::isfinite(report.loss)) {
          throw common::RunError("training loss became " + std::to_string(report.loss) +
                                     " at step " + std::to_string(step),
                                 "lower --lr or raise --warmup; --resume continues from the last "
                                 "committed step");
        }
        finish_unit(layers + 1, {impl.lnf_w_grad, impl.lnf_b_grad}, -1);
      }
      at::Tensor grad = std::move(head.input_grad);
      for (std::int64_t l = layers; l-- > 0;) {
        const auto li = static_cast<std::size_t>(l);
        const at::Tensor input = impl.stash       ? impl.stash->pop(l)
                                 : impl.gpu_stash ? impl.gpu_stash->pop(l)
                                                  : inputs[li];
        BlockGrads block = block_backward(config_, block_at(l), input, grad);
        done_with_block();
        int slot = -1;
        BlockWeights* acc = nullptr;
        if (impl.pool) {
          t_backward.reset();
          {
            auto t = cp.scope("grad_slot_wait");
            slot = stage.acquire_pool_slot();
          }
          t_backward = std::make_unique<common::PhaseTimes::Scope>(cp, "backward");
          acc = &impl.block_grads[static_cast<std::size_t>(slot)];
          if (impl.host_grads && k > 0) {
            // Only g_k, widened to fp32: the drain adds it to the CPU accumulator.
            for (int i = 0; i < kBlockTensorCount; ++i) {
              const at::Tensor& g = block.weight_grads[i];
              if (g.defined()) {
                (*acc)[i].copy_(g);
              } else {
                (*acc)[i].zero_();
              }
            }
          } else {
            for (at::Tensor& g : acc->tensors) g.zero_();
          }
        } else {
          acc = &impl.block_grads[li];
        }
        if (!(impl.host_grads && k > 0)) {
          for (int i = 0; i < kBlockTensorCount; ++i) accumulate((*acc)[i], block.weight_grads[i]);
        }
        if (impl.host_grads) {
          std::vector<at::Tensor> slot_grads(acc->tensors.begin(), acc->tensors.end());
          // K = 1: the pool slot holds the final gradient; its norm terms come from the GPU, as in
          // the in-memory trainer. K > 1: the drain computes them from the CPU sum.
          if (last && train_.accum == 1) add_norm_terms(1 + l, slot_grads);
          OptimizerStage::Job drain{1 + l, std::move(slot_grads),
                                    1.0,   false,
                                    slot,  impl.cuda ? mark_compute_stream() : CudaMark{}};
          drain.drain = true;
          drain.first = k == 0;
          drain.norm = last && train_.accum > 1;
          stage.submit(std::move(drain));
          if (last) {
            // The block's accumulator in RAM, or none: the update reads it from the store.
            std::vector<at::Tensor> host;
            if (!impl.grads_in_store) {
              host.assign(impl.host_block_grads[li].tensors.begin(),
                          impl.host_block_grads[li].tensors.end());
            }
            if (clip) {
              deferred[static_cast<std::size_t>(1 + l)] = std::move(host);
            } else {
              OptimizerStage::Job update{1 + l, std::move(host), 1.0, false, -1, CudaMark{}};
              update.host = true;
              stage.submit(std::move(update));
            }
          }
        } else if (last) {
          finish_unit(1 + l, std::vector<at::Tensor>(acc->tensors.begin(), acc->tensors.end()),
                      slot);
        }
        grad = std::move(block.input_grad);
        if (!impl.stash && !impl.gpu_stash) inputs[li] = at::Tensor();
      }
      if (impl.stash) impl.stash->end_pass();
      if (impl.gpu_stash) impl.gpu_stash->end_pass();
      embed_backward(x, grad, impl.wte_grad, impl.wpe_grad);
      if (last) finish_unit(0, {impl.wte_grad, impl.wpe_grad}, -1);
    }
    impl.in_backward.store(false);
    if (impl.host_grads) {
      {
        auto t = cp.scope("drain_wait");  // every block's gradients are in CPU memory
        stage.wait_drains(train_.accum * layers);
      }
      if (train_.accum > 1) {
        for (std::int64_t l = 0; l < layers; ++l)
          norm_terms[static_cast<std::size_t>(1 + l)] =
              impl.block_norm_terms[static_cast<std::size_t>(l)];
      }
    }
    if (clip) {
      for (std::size_t u = 0; u < deferred.size(); ++u) {
        if (impl.host_grads && u >= 1 && u <= static_cast<std::size_t>(layers)) continue;  // above
        add_norm_terms(static_cast<std::int64_t>(u), deferred[u]);
      }
    }
    at::Tensor sq = at::zeros({}, impl.wte_grad.options().dtype(at::kDouble));
    for (const auto& terms : norm_terms) {
      for (const at::Tensor& term : terms) sq += term;
    }
    report.grad_norm = std::sqrt(sq.item<double>());
    if (clip) {
      const bool scaled = report.grad_norm > train_.grad_clip;
      const double scale = train_.grad_clip / (report.grad_norm + 1e-6);
      const CudaMark ready = impl.cuda ? mark_compute_stream() : CudaMark{};
      for (std::int64_t unit : impl.order) {
        OptimizerStage::Job update{
            unit, std::move(deferred[static_cast<std::size_t>(unit)]), scale, scaled, -1, ready};
        update.host = impl.host_grads && unit >= 1 && unit <= layers;
        stage.submit(std::move(update));
      }
    }
    {
      auto t = cp.scope("optimizer_wait");
      stage.wait_step_done();
    }
    result.train_seconds += step_timer.seconds();
    result.tokens += tokens_per_step;
    result.losses.push_back(report.loss);
    ++stats_.steps;
    report.tokens_per_s = static_cast<double>(result.tokens) / result.train_seconds;
    report.tflops = report.tokens_per_s * flops_per_token / 1e12;
    if (step == train_.steps || (train_.eval_every > 0 && step % train_.eval_every == 0)) {
      report.val_loss = eval_scope();
      result.val_losses.emplace_back(step, *report.val_loss);
    }
    if (on_step) on_step(report);
  }
  stats_.optimizer_phases = stage.phases();
  if (impl.streaming) {
    stats_.stream_read_bytes = impl.stream->loaded_bytes();
    stats_.stream_wait_seconds = impl.stream->wait_seconds();
    if (!plan_.states_in_cpu) stats_.ssd_read_bytes += stats_.stream_read_bytes;
    stats_.pcie_h2d_bytes += cuda_block_slots_uploaded_bytes(impl.stream->slots());
  }
  if (impl.stash) {
    stats_.input_bytes_written = impl.stash->bytes_written();
    stats_.input_bytes_read = impl.stash->bytes_read();
    stats_.ssd_write_bytes += stats_.input_bytes_written;
    stats_.ssd_read_bytes += stats_.input_bytes_read;
  }
  if (impl.gpu_stash) {  // over PCIe, not the store
    stats_.input_bytes_written = impl.gpu_stash->bytes_down();
    stats_.input_bytes_read = impl.gpu_stash->bytes_up();
    stats_.pcie_d2h_bytes += stats_.input_bytes_written;
    stats_.pcie_h2d_bytes += stats_.input_bytes_read;
  }
  stats_.step_seconds =
      stats_.steps > 0 ? result.train_seconds / static_cast<double>(stats_.steps) : 0;
  for (const auto& [phase, seconds] : stats_.compute_phases.all())
    result.phases.add(phase, seconds);
  result.tokens_per_s = static_cast<double>(result.tokens) / std::max(result.train_seconds, 1e-9);
  result.tflops = result.tokens_per_s * flops_per_token / 1e12;
  result.tflops_recompute =
      result.tokens_per_s * config_.train_flops_per_token_recompute(train_.seq) / 1e12;
  return result;
}

}  // namespace sparsetrain::fuyou
