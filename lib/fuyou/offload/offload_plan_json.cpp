// OffloadPlan as JSON (see offload_plan_json.h).
#include "fuyou/offload/offload_plan_json.h"

#include <nlohmann/json.hpp>

namespace sparsetrain::fuyou {

void to_json(nlohmann::json& j, const PlanItem& item) {
  j = {{"what", item.what}, {"bytes", item.bytes}};
}

void to_json(nlohmann::json& j, const ActivationPlan& a) {
  nlohmann::json blocks = nlohmann::json::array();
  for (std::size_t l = 0; l < a.kept.size(); ++l) {
    blocks.push_back({{"kept", a.kept[l].to_string()},
                      {"tier", a.kept[l].empty() ? "none" : activation_tier_name(a.tiers[l])}});
  }
  j = {{"mode", a.mode},
       {"blocks", blocks},
       {"blocks_keeping", a.blocks_keeping()},
       {"compute_bytes", a.compute_bytes},
       {"cpu_bytes", a.cpu_bytes},
       {"store_bytes", a.store_bytes},
       {"recompute_flops", a.recompute_flops}};
  if (a.mode == "auto") {
    j["recompute_seconds"] = a.recompute_seconds;
    j["keep_all_seconds"] = a.keep_all_seconds;
    if (!a.keep_all_refusal.empty()) j["keep_all_refusal"] = a.keep_all_refusal;
    j["next_best"] = a.next_best;
  }
}

void to_json(nlohmann::json& j, const OffloadPlan& plan) {
  j = {{"states", plan.states_in_cpu ? "cpu" : "store"},
       {"resident_blocks", plan.resident_blocks},
       {"stream_slots", plan.stream_slots},
       {"granularity", plan.stream_slots == 0      ? "resident"
                       : plan.pieces_per_block > 1 ? "piece"
                                                   : "block"},
       {"pieces_per_block", plan.pieces_per_block},
       {"stream_slot_floats", plan.stream_slot_floats},
       {"inputs_in_store", plan.inputs_in_store},
       {"block_grads_in_cpu", plan.block_grads_in_cpu},
       {"block_grads_in_store", plan.block_grads_in_store},
       {"inputs_in_cpu", plan.inputs_in_cpu},
       {"outside_grads_in_cpu", plan.outside_grads_in_cpu},
       {"grad_block_buffers", plan.grad_block_slots},
       {"state_staging_slots", plan.state_slots},
       {"state_piece_floats", plan.state_piece_floats},
       {"compute_bytes", plan.compute_total},
       {"compute_items", plan.compute_items},
       {"cpu_bytes", plan.cpu_total},
       {"cpu_items", plan.cpu_items},
       {"ssd_bytes", plan.ssd_total},
       {"ssd_items", plan.ssd_items},
       {"ssd_bytes_per_param", plan.ssd_bytes_per_param},
       {"store_slots", plan.store_slots},
       {"activations", plan.activations},
       {"per_iteration",
        {{"flops", plan.flops},
         {"ssd_read_bytes", plan.ssd_read_bytes},
         {"ssd_write_bytes", plan.ssd_write_bytes},
         {"pcie_h2d_bytes", plan.pcie_h2d_bytes},
         {"pcie_d2h_bytes", plan.pcie_d2h_bytes}}}};
}

nlohmann::json offload_bound_json(const OffloadPlan& plan) {
  nlohmann::json j = {{"bound_seconds", plan.bound_seconds}, {"binding", plan.binding}};
  for (const BoundTerm& term : plan.terms) j["terms"][term.name] = term.seconds;
  return j;
}

}  // namespace sparsetrain::fuyou
