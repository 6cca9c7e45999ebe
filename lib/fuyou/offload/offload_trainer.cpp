// OffloadTrainer (see offload_trainer.h): the constructor builds the placements from the plan;
// train() is the compute thread's loop over them.
#include "fuyou/offload/offload_trainer.h"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <future>
#include <sstream>
#include <tuple>

#include "common/error.h"
#include "common/io/aligned_buffer.h"
#include "common/units.h"
#include "fuyou/model/gpt_model.h"
#include "fuyou/offload/compute_meter.h"
#include "fuyou/offload/cuda_transfer.h"
#include "fuyou/offload/offload_internals.h"
#include "fuyou/offload/optimizer_stage.h"
#include "fuyou/store/tensor_store.h"
#include "fuyou/train/data_parallel.h"

namespace sparsetrain::fuyou {

namespace {

using common::io::AlignedBuffer;

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

OffloadBudgets offload_budgets_of(const OffloadOptions& options) {
  if (options.ssd_dirs.empty() && !options.assumed_ssds) {
    throw common::UsageError("the offloaded trainer needs --ssd directories",
                             "pass --ssd DIR[,DIR...]");
  }
  OffloadBudgets budgets = options.budgets;
  budgets.ssd_free_bytes = 0;
  budgets.ssd_used_bytes = 0;
  if (options.assumed_ssds) {
    budgets.ssd_free_bytes = options.assumed_ssds->total_bytes();
  } else {
    for (std::size_t i = 0; i < options.ssd_dirs.size(); ++i) {
      budgets.ssd_free_bytes += free_bytes_of(options.ssd_dirs[i]);
      if (options.resume) {
        budgets.ssd_used_bytes +=
            file_bytes_of(options.ssd_dirs[i] + "/" + TensorStore::data_file_name(i));
      }
    }
  }
  budgets.store_extent_bytes = options.store_extent_bytes;
  return budgets;
}

OffloadShape offload_shape_of(const TrainOptions& train, const OffloadOptions& options) {
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
  shape.pieces_per_block = options.pieces_per_block;
  shape.store_slots = options.store_slots;
  shape.activations = options.activations;
  if (options.state_piece_floats < 0) {
    throw common::UsageError(
        "state piece of " + std::to_string(options.state_piece_floats) + " floats",
        "pass a positive piece size, or 0 for the default");
  }
  shape.state_piece_floats = state_piece_floats(
      options.store_extent_bytes,
      options.state_piece_floats > 0 ? options.state_piece_floats : kDefaultStatePieceFloats);
  return shape;
}

OffloadPlan plan_offload_run(const ModelConfig& config, const TrainOptions& train,
                             const OffloadOptions& options) {
  const OffloadBudgets budgets = offload_budgets_of(options);
  return plan_offload(config, offload_shape_of(train, options), budgets, options.rates);
}

namespace {

// `weights` as a source (checked first, unless resuming: then it is never visited).
WeightSource source_of(const ModelConfig& config, ModelWeights weights, bool resume) {
  if (!resume) check_weight_shapes(config, weights);
  auto held = std::make_shared<ModelWeights>(std::move(weights));
  return [held](const WeightVisitor& visit) {
    for (const auto& [name, tensor] : held->named()) visit(name, *tensor);
  };
}

// An outside unit's gradient accumulators (fp32: compute tier, or CPU memory with
// plan().outside_grads_in_cpu), in its tensor order.
std::vector<at::Tensor*> outside_grads(OffloadState& state, const ModelConfig& config,
                                       std::int64_t unit) {
  ST_ASSERT(!is_block_unit(config, unit), "block gradients are not the compute tier's");
  std::vector<at::Tensor*> out;
  for (auto& [name, g] : state.outside_grads.named()) {
    if (unit_of(config, name) == unit) out.push_back(g);
  }
  return out;
}

// The same, as the tensors (handles) StepGradients::finish takes.
std::vector<at::Tensor> outside_grad_tensors(OffloadState& state, const ModelConfig& config,
                                             std::int64_t unit) {
  std::vector<at::Tensor> out;
  for (at::Tensor* g : outside_grads(state, config, unit)) out.push_back(*g);
  return out;
}

}  // namespace

OffloadTrainer::OffloadTrainer(ModelConfig config, ModelWeights initial, TrainOptions train,
                               OffloadOptions options)
    : OffloadTrainer(ModelConfig(config), source_of(config, std::move(initial), options.resume),
                     train, OffloadOptions(options)) {}

OffloadTrainer::OffloadTrainer(ModelConfig config, WeightSource initial, TrainOptions train,
                               OffloadOptions options)
    : config_(std::move(config)),
      train_(train),
      options_(std::move(options)),
      impl_(std::make_unique<OffloadState>()) {
  config_.validate();
  check_train_options(config_, train_);
  check_rank_options(train_, options_.ranks.get());
  impl_->cuda = train_.device == TrainDevice::kCuda;
  if (impl_->cuda && !torch::cuda::is_available()) {
    throw common::EnvironmentError("--device cuda: no CUDA device is visible",
                                   "run on a GPU machine or pass --device cpu");
  }
  if (options_.assumed_ssds) {
    throw common::UsageError("assumed SSDs plan a run but cannot hold one",
                             "pass --dry-run to plan, or drop --assume-ssd to train");
  }
  if (options_.resume) open_resumed_store();
  plan_ = plan_offload_run(config_, train_, options_);
  if (options_.ranks && plan_.block_grads_in_cpu && train_.accum > 1) {
    throw common::UsageError(
        "data parallel with the block gradients drained to the CPU side and --accum " +
            std::to_string(train_.accum) + " is not supported yet",
        "run --accum 1 per rank (more ranks instead), or give the compute tier room for the "
        "block gradients");
  }
  make_compute_weights();
  make_unit_table();
  open_or_create_store(initial);
}

OffloadTrainer::~OffloadTrainer() {
  // The stream's loader and the stash's worker go through store_: stop them first.
  if (impl_) {
    impl_->blocks.reset();
    impl_->inputs.reset();
    impl_->kept.reset();
  }
}

void OffloadTrainer::make_compute_weights() {
  // Resume: zeros of the compute tier's dtype, loaded by open_store. New: shapes only (meta
  // tensors: no memory) until init_store visits the source and sets the resident ones. Streamed
  // blocks stay shape-only: their weights come from the stream.
  const auto meta32 = at::TensorOptions().dtype(at::kFloat).device(at::kMeta);
  const auto compute = impl_->cuda ? at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA)
                                   : at::TensorOptions().dtype(at::kFloat).device(at::kCPU);
  const auto resident = options_.resume ? compute : meta32;
  const auto block = plan_.stream_slots > 0 ? meta32 : resident;
  auto make = [](at::IntArrayRef shape, const at::TensorOptions& o) {
    return o.device() == at::kMeta ? at::empty(shape, o) : at::zeros(shape, o);
  };
  const std::int64_t v = config_.vocab, c = config_.n_embd;
  compute_ = empty_weights(config_);
  compute_.wte = make({v, c}, resident);
  if (!config_.llama()) compute_.wpe = make({config_.n_positions, c}, resident);
  for (BlockWeights& weights : compute_.blocks) {
    for (int i = 0; i < weights.size(); ++i)
      weights[i] = make(block_tensor_shape(config_, i), block);
  }
  compute_.ln_f_weight = make({c}, resident);
  if (!config_.llama()) compute_.ln_f_bias = make({c}, resident);
  if (config_.llama() && !config_.tie_word_embeddings) compute_.lm_head = make({v, c}, resident);
}

void OffloadTrainer::make_unit_table() {
  OffloadState& state = *impl_;
  state.piece_floats = plan_.state_piece_floats;
  state.units.resize(static_cast<std::size_t>(unit_count(config_)));
  for (auto& [name, tensor] : compute_.named()) {
    UnitTensors& unit = state.units[static_cast<std::size_t>(unit_of(config_, name))];
    unit.names.push_back(name);
    unit.compute.push_back(tensor);
  }
  for (std::size_t u = 0; u < state.units.size(); ++u) {
    UnitTensors& unit = state.units[u];
    unit.padded = unit_padded_params(config_, static_cast<std::int64_t>(u));
    unit.pieces = unit_pieces(unit.padded, state.piece_floats);
    for (const at::Tensor* w : unit.compute) unit.numels.push_back(w->numel());
    unit.published =
        !(plan_.stream_slots > 0 && is_block_unit(config_, static_cast<std::int64_t>(u)));
  }
  state.order.push_back(config_.n_layer + 1);
  for (std::int64_t l = config_.n_layer; l >= 1; --l) state.order.push_back(l);
  state.order.push_back(0);
  for (std::int64_t u : state.order) {
    for (const StatePiece& piece : state.units[static_cast<std::size_t>(u)].pieces)
      state.step_pieces.push_back({u, piece});
  }
}

void OffloadTrainer::open_resumed_store() {
  OffloadState& state = *impl_;
  StoreOptions store_options;
  store_options.extent_bytes = options_.store_extent_bytes;
  store_options.keep_previous = options_.ranks != nullptr;
  store_options.open_previous = options_.resume_previous_commit;
  const std::string first_dir = options_.ssd_dirs[0];
  const std::string start_over = "run the same command without --resume to start a new run";
  if (!std::filesystem::exists(first_dir + "/" + TensorStore::kManifestName)) {
    throw common::UsageError("nothing to resume in '" + first_dir + "': no tensor store there",
                             start_over + " (or pass --ssd the run's directories, first first)");
  }
  store_ = TensorStore::open(options_.ssd_dirs, store_options);
  if (!store_->contains(kMetaName)) {
    throw common::UsageError("nothing to resume in '" + first_dir +
                                 "': its store holds no committed step (the run that made it "
                                 "stopped before its first commit)",
                             start_over + ", which replaces the empty store");
  }
  // Refused by its format, not its size: format 1 had a shorter train.state; format 2 lacks only
  // the store slots (then two: every store before format 3 copied on write).
  const std::uint64_t meta_bytes = store_->info(kMetaName).bytes;
  if (meta_bytes < 8) {
    throw common::RunError("the store's train.state is " + std::to_string(meta_bytes) + " bytes",
                           "start a new run in an empty --ssd directory");
  }
  state.meta = AlignedBuffer(kMetaLen * sizeof(std::int64_t));
  auto* meta = reinterpret_cast<std::int64_t*>(state.meta.data());
  store_
      ->read(kMetaName, meta, 0,
             std::min<std::uint64_t>(meta_bytes, kMetaLen * sizeof(std::int64_t)),
             /*verify=*/true)
      .get();
  const bool format_2 =
      meta[kMetaFormat] == 2 && meta_bytes == kMetaStoreSlots * sizeof(std::int64_t);
  if (!format_2 &&
      (meta[kMetaFormat] != kMetaFormatVersion || meta_bytes != kMetaLen * sizeof(std::int64_t))) {
    throw common::RunError(
        "the store's train.state has format " + std::to_string(meta[kMetaFormat]),
        "start a new run in an empty --ssd directory");
  }
  if (format_2) {
    meta[kMetaStoreSlots] = 2;
    state.meta_len = kMetaStoreSlots;  // its commits keep its length
  }
  // A store keeps the slots it was made with: --store-slots auto takes them.
  if (options_.store_slots == 0) options_.store_slots = meta[kMetaStoreSlots];
  if (options_.resume_previous_commit && options_.store_slots == 1) {
    throw common::UsageError("the store in '" + first_dir +
                                 "' updates in place (--store-slots 1): it cannot fall back to "
                                 "its previous commit",
                             "data-parallel runs that may need to resume: --store-slots 2");
  }
}

void OffloadTrainer::open_or_create_store(const WeightSource& initial) {
  OffloadState& state = *impl_;
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
      t.impl_->blocks.reset();
      t.impl_->inputs.reset();
      t.impl_->kept.reset();
      t.store_.reset();
      TensorStore::remove_new(t.options_.ssd_dirs);
    }
  } new_store{*this};
  if (options_.resume) {
    // The store keeps the extent it was made with; pieces must fill whole extents of it
    // (state_pieces.h: no two in-flight writes may share one).
    if (state_bytes(state.piece_floats) % store_->extent_bytes() != 0) {
      throw common::RunError("the store in '" + options_.ssd_dirs[0] + "' has extents of " +
                                 std::to_string(store_->extent_bytes()) +
                                 " bytes, which pieces of " + std::to_string(state.piece_floats) +
                                 " floats do not fill",
                             "resume with the store extent the run was started with");
    }
    check_resumed_run(reinterpret_cast<const std::int64_t*>(state.meta.data()));
  } else {
    StoreOptions store_options;
    store_options.extent_bytes = options_.store_extent_bytes;
    store_options.keep_previous = options_.ranks != nullptr;
    store_ = TensorStore::create(options_.ssd_dirs, store_options);
    new_store.created = true;
  }
  state.states = make_state_placement(plan_.states_in_cpu, plan_.store_slots == 1, state.units,
                                      state.piece_floats, plan_.largest_piece_floats, *store_,
                                      stats_, options_.on_piece_durable);
  if (options_.resume) {
    // The placements first: a step the one-slot store sealed but did not commit is finished
    // through them before the compute weights are loaded.
    make_placements();
    open_store();
    state.states->finish_setup();
  } else {
    init_store(initial);
    state.states->finish_setup();
    make_placements();
  }
}

void OffloadTrainer::make_placements() {
  OffloadState& state = *impl_;
  const auto fp32 = at::TensorOptions().dtype(at::kFloat).device(state.cuda ? at::kCUDA : at::kCPU);
  if (state.cuda) {  // one state piece each (the largest): the transfers go piece by piece
    for (int i = 0; i < 2; ++i) {
      state.grad_slots[i] = AlignedBuffer(segment_bytes(plan_.largest_piece_floats), /*pin=*/true);
      state.weight_slots[i] = AlignedBuffer(
          kBf16Bytes * static_cast<std::size_t>(plan_.largest_piece_floats), /*pin=*/true);
    }
  }
  ModelWeights outside = compute_;
  outside.blocks.clear();
  // The embedding, norm and head gradients: beside the compute weights, or (CUDA, no room there)
  // in CPU memory, where the loss backward's slices and the embedding rows add up.
  state.outside_grads = zeros_like_weights(
      outside, plan_.outside_grads_in_cpu ? at::TensorOptions().dtype(at::kFloat) : fp32);
  if (train_.accum > 1) state.embedding_scratch = at::empty_like(state.outside_grads.wte);
  if (plan_.block_grads_in_store) {
    if (!state.cuda) {  // CUDA has its pinned slots
      for (auto& slot : state.grad_slots)
        slot = AlignedBuffer(segment_bytes(state.units[1].pieces[0].floats), /*pin=*/false);
    }
    state.accumulators = make_accumulators_in_store(config_, state.units, state.piece_floats,
                                                    state.grad_slots, *store_, stats_);
  } else if (plan_.block_grads_in_cpu) {
    state.accumulators = make_accumulators_in_ram(config_, state.units, state.grad_slots);
  }
  if (state.accumulators) {
    state.step_drains = train_.accum * config_.n_layer * plan_.pieces_per_block;
    state.block_grads =
        make_drained_block_grads(config_, fp32, plan_.grad_block_slots, train_.accum,
                                 plan_.pieces_per_block, *state.accumulators);
  } else if (plan_.grad_block_slots < config_.n_layer) {
    state.block_grads = make_pooled_block_grads(config_, fp32, plan_.grad_block_slots);
  } else {
    state.block_grads = make_resident_block_grads(config_, fp32);
  }
  const std::int64_t b = train_.micro_batch, t = train_.seq, c = config_.n_embd;
  if (plan_.inputs_in_store) {
    state.inputs = make_inputs_in_store(*store_, config_.n_layer, b, t, c);
  } else if (plan_.inputs_in_cpu) {
    state.inputs = make_inputs_in_pinned_cpu(config_.n_layer, b, t, c);
  } else {
    state.inputs = make_inputs_in_compute_tier();
  }
  const ActivationPlan& acts = plan_.activations;
  state.kept = std::make_unique<KeptActivations>(config_, b, t, state.cuda, acts.kept, acts.tiers,
                                                 store_.get());
  ActivationPolicy policy{acts.kept, b * t, t, state.cuda};
  state.blocks =
      plan_.stream_slots > 0
          ? make_streamed_blocks(config_, plan_.stream_slots, state.piece_floats, state.cuda,
                                 plan_.pieces_per_block, *state.states, std::move(policy))
          : make_resident_blocks(config_, compute_.blocks, std::move(policy));
  state.mark_compute = state.cuda ? std::function<CudaMark()>(mark_compute_stream)
                                  : std::function<CudaMark()>([] { return CudaMark{}; });
}

void OffloadTrainer::init_store(const WeightSource& initial) {
  OffloadState& state = *impl_;
  state.meta = AlignedBuffer(kMetaLen * sizeof(std::int64_t));
  state.states->define_tensors();
  if (state.states->in_place()) {
    // Every gradient a sealed step rolls forward from is in the store's first commit: the block
    // accumulators (make_accumulators_in_store finds them) and the embeddings' and ln_f's.
    for (std::int64_t l = 0; l < config_.n_layer; ++l) {
      store_->define(grad_store_name(l), StoreDType::kF32, {state.units[1].padded},
                     TensorKind::kScratch);
    }
    for (const std::int64_t u : outside_units(config_)) {
      store_->define(step_grad_store_name(u), StoreDType::kF32,
                     {state.units[static_cast<std::size_t>(u)].padded}, TensorKind::kScratch);
    }
  }
  store_->define(kMetaName, StoreDType::kI64, {kMetaLen});
  // The tensors arrive in unit order and, within a unit, in its tensor order: each fills the
  // master segments of the unit's pieces from where the previous one ended, and a piece goes to
  // the store as soon as its last tensor float is in (m = v = 0), through the placement's buffer.
  const auto cpu32 = at::TensorOptions().dtype(at::kFloat).device(at::kCPU);
  const auto named = compute_.named();
  std::size_t next = 0;      // index into `named` of the tensor expected next
  std::int64_t filled = 0;   // floats of the current unit written so far
  std::size_t piece_at = 0;  // the current unit's piece being filled
  initial([&](const std::string& name, const at::Tensor& given) {
    if (next >= named.size() || name != named[next].first) {
      throw common::UsageError(
          "initial weights: got tensor '" + name + "' where '" +
              (next < named.size() ? named[next].first : std::string("nothing more")) +
              "' was expected",
          "pass every weight once, in ModelWeights::named() order");
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
    const std::int64_t u = unit_of(config_, name);
    const UnitTensors& unit = state.units[static_cast<std::size_t>(u)];
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
      std::memcpy(state.states->init_buffer(u, piece) + (filled - piece.first), src,
                  segment_bytes(n));
      src += n;
      left -= n;
      filled += n;
      if (filled == piece.first + piece.floats) {
        state.states->init_flush(u, piece);
        ++piece_at;
      }
    }
    // The unit's last piece, unless its data ended on the piece's end (no padding) and it went.
    if (name == unit.names.back() && piece_at < unit.pieces.size()) {
      state.states->init_flush(u, unit.pieces[piece_at]);
    }
    // The resident compute weights: the CPU tier keeps this very tensor, CUDA a bf16 copy.
    if (unit.published) {
      *compute = state.cuda ? t.to(at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA)) : t;
    }
    ++next;
  });
  if (next != named.size()) {
    throw common::UsageError("initial weights: '" + named[next].first + "' is missing",
                             "pass every weight once, in ModelWeights::named() order");
  }
  auto* meta = reinterpret_cast<std::int64_t*>(state.meta.data());
  meta[kMetaFormat] = kMetaFormatVersion;
  meta[kMetaStep] = 0;
  meta[kMetaSeed] = static_cast<std::int64_t>(train_.seed);
  meta[kMetaBatch] = train_.micro_batch;
  meta[kMetaSeq] = train_.seq;
  meta[kMetaAccum] = train_.accum;
  meta[kMetaLayers] = config_.n_layer;
  meta[kMetaHidden] = config_.n_embd;
  meta[kMetaPieceFloats] = state.piece_floats;
  meta[kMetaStoreSlots] = plan_.store_slots;
  store_->write(kMetaName, meta, 0, kMetaLen * sizeof(std::int64_t)).get();
  store_->commit();
  first_step_ = 1;
}

void OffloadTrainer::open_store() {
  OffloadState& state = *impl_;
  const auto* meta = reinterpret_cast<const std::int64_t*>(state.meta.data());
  first_step_ = meta[kMetaStep] + 1;
  if (std::optional<SealedStep> sealed = state.states->resume(meta[kMetaStep])) {
    roll_forward(*sealed);
  }
  for (std::size_t u = 0; u < state.units.size(); ++u) {
    const UnitTensors& unit = state.units[u];
    for (const StatePiece& piece : unit.pieces) {
      const float* base = state.states->load(static_cast<std::int64_t>(u), piece);
      if (!unit.published) continue;  // its weights come from the stream
      for (const TensorSpan& span : piece_spans(unit.numels, piece)) {
        flat_slice(*unit.compute[span.tensor], span.tensor_offset, span.floats)
            .copy_(float_span(base + span.piece_offset, span.floats));
      }
    }
  }
}

void OffloadTrainer::roll_forward(const SealedStep& sealed) {
  OffloadState& state = *impl_;
  ST_ASSERT(state.accumulators, "an in-place store keeps its block gradients in the store");
  for (std::int64_t l = 0; l < config_.n_layer; ++l) {  // defined with the store (init_store)
    if (!store_->contains(grad_store_name(l))) {
      throw common::RunError("the store's step journal has step " + std::to_string(sealed.step) +
                                 " sealed, but its block gradients '" + grad_store_name(l) +
                                 "' are not in the store",
                             "the store is inconsistent: start a new run in an empty --ssd "
                             "directory");
    }
  }
  common::Timer timer;
  for (const std::int64_t u : outside_units(config_)) {  // as sealed: "step_grads.<u>"
    std::uint64_t offset = 0;
    for (at::Tensor* grad : outside_grads(state, config_, u)) {
      at::Tensor host = at::empty({grad->numel()}, at::TensorOptions().dtype(at::kFloat));
      const std::uint64_t bytes = segment_bytes(grad->numel());
      store_->read(step_grad_store_name(u), host.data_ptr(), offset, bytes).get();
      grad->view({-1}).copy_(host);
      offset += bytes;
    }
  }
  // The units from the one holding the first piece not done, in processing order, with their
  // gradients: the blocks' in the store, the others' just read.
  const auto first = static_cast<std::size_t>(sealed.pieces_done);
  OptimizerStage stage(state, *store_, train_, options_.commit_every, stats_);
  stage.start_step(sealed.step, sealed.lr, first);  // the stopped run's rate, as its pieces had
  if (first < state.step_pieces.size()) {
    const CudaMark ready = state.mark_compute();
    auto unit = std::find(state.order.begin(), state.order.end(), state.step_pieces[first].unit);
    for (; unit != state.order.end(); ++unit) {
      UpdateJob job;
      job.unit = *unit;
      job.scale = sealed.scale;
      job.scaled = sealed.scaled;
      job.ready = ready;
      job.drained = is_block_unit(config_, *unit);
      if (job.drained) {
        job.grads = state.accumulators->update_grads(*unit - 1);
      } else {
        for (at::Tensor* grad : outside_grads(state, config_, *unit)) job.grads.push_back(*grad);
      }
      stage.submit(std::move(job));
    }
  }
  stage.wait_step_done();  // committed: the store is at step sealed.step
  first_step_ = sealed.step + 1;
  StepReport report;
  report.step = sealed.step;
  report.loss = sealed.loss;
  report.lr = sealed.lr;
  report.grad_norm = sealed.grad_norm;
  rolled_forward_ = report;
  rolled_forward_seconds_ = timer.seconds();
}

SealJob OffloadTrainer::seal_job(const SealedStep& step) {
  OffloadState& state = *impl_;
  SealJob job;
  job.step = step;
  for (const std::int64_t u : outside_units(config_)) {
    std::vector<at::Tensor> grads;
    for (at::Tensor* grad : outside_grads(state, config_, u)) grads.push_back(*grad);
    job.grads.emplace_back(step_grad_store_name(u), std::move(grads));
  }
  job.ready = state.mark_compute();
  return job;
}

void OffloadTrainer::check_resumed_run(const std::int64_t* meta) const {
  const std::pair<const char*, std::pair<std::int64_t, std::int64_t>> checks[] = {
      {"--seed", {meta[kMetaSeed], static_cast<std::int64_t>(train_.seed)}},
      {"--micro-batch", {meta[kMetaBatch], train_.micro_batch}},
      {"--seq", {meta[kMetaSeq], train_.seq}},
      {"--accum", {meta[kMetaAccum], train_.accum}},
      {"--model layers", {meta[kMetaLayers], config_.n_layer}},
      {"--model hidden", {meta[kMetaHidden], config_.n_embd}},
      {"--state-piece (floats)", {meta[kMetaPieceFloats], impl_->piece_floats}},
      {"--store-slots", {meta[kMetaStoreSlots], plan_.store_slots}}};
  for (const auto& [flag, values] : checks) {
    if (values.first != values.second) {
      throw common::UsageError(std::string("--resume: the stored run has ") + flag + " " +
                                   std::to_string(values.first) + ", this run " +
                                   std::to_string(values.second),
                               "resume with the flags of the stored run (--store-slots auto "
                               "takes the store's)");
    }
  }
}

ModelWeights OffloadTrainer::read_master() {
  ModelWeights out = compute_;  // shapes only: every tensor is replaced below
  for (auto& [name, t] : out.named()) {
    *t = at::empty(t->sizes(), at::TensorOptions().dtype(at::kFloat).device(at::kCPU));
  }
  std::map<std::string, at::Tensor*> by_name;
  for (auto& [name, t] : out.named()) by_name[name] = t;
  // The master segment of each piece, through one piece-sized buffer.
  AlignedBuffer buffer(segment_bytes(plan_.largest_piece_floats), /*pin=*/false);
  auto* base = reinterpret_cast<float*>(buffer.data());
  for (std::size_t u = 0; u < impl_->units.size(); ++u) {
    const UnitTensors& unit = impl_->units[u];
    for (const StatePiece& piece : unit.pieces) {
      store_
          ->read(unit_store_name(static_cast<std::int64_t>(u)), base,
                 impl_->states->piece_offset(static_cast<std::int64_t>(u), piece),
                 piece.master_bytes(), /*verify=*/true)
          .get();
      for (const TensorSpan& span : piece_spans(unit.numels, piece)) {
        flat_slice(*by_name.at(unit.names[span.tensor]), span.tensor_offset, span.floats)
            .copy_(float_span(base + span.piece_offset, span.floats));
      }
    }
  }
  return out;
}

double OffloadTrainer::evaluate(const TokenData& valid_data) {
  ComputeBlocks& blocks = *impl_->blocks;
  torch::NoGradGuard no_grad;
  blocks.start_forward(train_.eval_batches);
  double sum = 0;
  for (std::int64_t i = 0; i < train_.eval_batches; ++i) {
    auto [x, y] = validation_batch(valid_data, train_, i);
    at::Tensor h = embed_forward(compute_, x);
    for (std::int64_t l = 0; l < config_.n_layer; ++l) h = blocks.forward(l, h);
    sum += lm_loss(config_, compute_, h, y, train_.loss_chunk_rows);
  }
  return sum / static_cast<double>(train_.eval_batches);
}

void OffloadTrainer::run_micro_batch(const TokenData& train_data, std::int64_t step, std::int64_t k,
                                     double& loss_sum, StepGradients& grads,
                                     std::unique_ptr<common::PhaseTimes::Scope>& backward,
                                     common::PhaseTimes& phases) {
  OffloadState& state = *impl_;
  const bool last = k + 1 == train_.accum;
  const std::int64_t layers = config_.n_layer;
  at::Tensor x, y;
  {
    auto t = phases.scope("data");
    std::tie(x, y) = training_batch(train_data, train_, step, k);
  }
  at::Tensor h;
  {
    auto t = stats_.compute_phases.scope("forward");
    torch::NoGradGuard no_grad;
    h = embed_forward(compute_, x);
    for (std::int64_t l = 0; l < layers; ++l) {
      state.inputs->push(l, h);
      BlockActivations kept;
      h = state.blocks->forward(l, h, &kept);
      state.kept->push(l, std::move(kept));
    }
  }
  backward = std::make_unique<common::PhaseTimes::Scope>(stats_.compute_phases, "backward");
  const double grad_scale = 1.0 / static_cast<double>(step_micro_batches(train_));
  ModelWeights& outside = state.outside_grads;
  // The micro-batch's wte gradient: from zero in the scratch for k > 0 (gpt_model.h), else
  // straight into the accumulator.
  at::Tensor wte = k > 0 ? state.embedding_scratch.zero_() : outside.wte;
  at::Tensor head_acc = outside.lm_head.defined() ? outside.lm_head : wte;
  LmLossBackward head = lm_loss_backward(
      config_, compute_, h, y, grad_scale,
      [&](std::int64_t first, const at::Tensor& g) {
        at::Tensor rows = head_acc.slice(0, first, first + g.size(0));
        if (g.is_cuda() && !rows.is_cuda()) stats_.pcie_d2h_bytes += g.nbytes();  // down to RAM
        accumulate(rows, g);
      },
      train_.loss_chunk_rows);
  h = at::Tensor();
  accumulate(outside.ln_f_weight, head.ln_f_weight_grad);
  accumulate(outside.ln_f_bias, head.ln_f_bias_grad);
  loss_sum += head.loss;
  if (last) {
    if (options_.ranks) loss_sum = grads.sum_over_ranks(loss_sum);
    // Checked before any update is handed over, so a diverged step never reaches the store.
    check_loss_finite(loss_sum / static_cast<double>(step_micro_batches(train_)), step,
                      "lower --lr or raise --warmup; --resume continues from the last committed "
                      "step");
    grads.finish(layers + 1, outside_grad_tensors(state, config_, layers + 1), -1);
  }
  at::Tensor grad = std::move(head.input_grad);
  for (std::int64_t l = layers; l-- > 0;) {
    const at::Tensor input = state.inputs->pop(l);
    const BlockActivations& kept = state.kept->pop(l);
    grad = state.blocks->backward(l, input, kept, grad, [&](int piece, const BlockWeights& g) {
      state.block_grads->take(l, k, last, piece, g, grads);
    });
  }
  state.inputs->end_pass();
  state.kept->end_pass();
  if (grad.is_cuda() && !outside.wte.is_cuda()) stats_.pcie_d2h_bytes += grad.nbytes();
  embed_backward(x, grad, wte, outside.wpe);
  if (k > 0) outside.wte.add_(wte);
  if (last) grads.finish(0, outside_grad_tensors(state, config_, 0), -1);
  backward.reset();
}

TrainResult OffloadTrainer::train(const TokenData& train_data, const TokenData& valid_data,
                                  const std::function<void(const StepReport&)>& on_step) {
  OffloadState& state = *impl_;
  const ComputeMeter meter(state.cuda);  // the compute tier's peak over the run
  TrainResult result;
  common::PhaseTimes& cp = stats_.compute_phases;
  auto eval_scope = [&] {
    auto t = result.phases.scope("eval");
    return evaluate(valid_data);
  };
  if (first_step_ == 1) result.val_losses.emplace_back(0, eval_scope());
  if (rolled_forward_) {  // the step the constructor finished (roll_forward): its record now
    StepReport report = *rolled_forward_;
    rolled_forward_.reset();
    result.losses.push_back(report.loss);
    result.phases.add("roll_forward", rolled_forward_seconds_);
    if (is_eval_step(train_, report.step)) {
      report.val_loss = eval_scope();
      result.val_losses.emplace_back(report.step, *report.val_loss);
    }
    if (on_step) on_step(report);
  }
  OptimizerStage stage(state, *store_, train_, options_.commit_every, stats_);
  for (std::int64_t step = first_step_; step <= train_.steps; ++step) {
    common::check_interrupt();
    common::Timer step_timer;
    StepReport report;
    report.step = step;
    report.lr = lr_at_step(train_, step);
    stage.start_step(step, report.lr);  // the optimizer thread starts prefetching states now
    state.blocks->start_training(train_.accum);
    state.in_backward.store(true);
    for (auto& [name, g] : state.outside_grads.named()) g->zero_();
    state.block_grads->start_step();
    std::unique_ptr<common::PhaseTimes::Scope> backward;
    // In place (one store slot): no update before the step's gradients are sealed in the store.
    const bool in_place = state.states->in_place();
    StepGradients grads(stage, state.units.size(), train_.grad_clip, in_place, state.mark_compute,
                        cp, backward);
    grads.set_ranks(options_.ranks.get());
    if (in_place) {
      grads.set_seal([&](double norm, double scale, bool scaled) {
        stage.submit(seal_job(SealedStep{step, 0, scale, scaled, report.loss, norm, report.lr}));
      });
    }
    double loss_sum = 0;
    for (std::int64_t k = 0; k < train_.accum; ++k) {
      run_micro_batch(train_data, step, k, loss_sum, grads, backward, result.phases);
    }
    report.loss = loss_sum / static_cast<double>(step_micro_batches(train_));
    state.in_backward.store(false);
    state.block_grads->finish_backward(grads);
    report.grad_norm = grads.finish_backward(state.outside_grads.wte, state.order);
    {
      auto t = cp.scope("optimizer_wait");
      stage.wait_step_done();
    }
    ++stats_.steps;
    record_step(result, report, step_timer.seconds(), config_, train_);
    if (is_eval_step(train_, step)) {
      report.val_loss = eval_scope();
      result.val_losses.emplace_back(step, *report.val_loss);
    }
    if (on_step) on_step(report);
  }
  stats_.optimizer_phases = stage.phases();
  state.blocks->add_stats(stats_);
  state.inputs->add_stats(stats_);
  state.kept->add_stats(stats_);
  stats_.recompute_flops = state.blocks->recompute_flops();
  stats_.compute_peak_bytes = meter.peak_bytes();
  stats_.step_seconds =
      stats_.steps > 0 ? result.train_seconds / static_cast<double>(stats_.steps) : 0;
  for (const auto& [phase, seconds] : stats_.compute_phases.all())
    result.phases.add(phase, seconds);
  finish_train_result(result, config_, train_);
  return result;
}

}  // namespace sparsetrain::fuyou
