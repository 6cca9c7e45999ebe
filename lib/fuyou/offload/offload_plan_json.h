// OffloadPlan as JSON, for the run record: the placement and bytes (metrics.offload) and the
// iteration-time bound (run.offload_bound, volatile: it comes from measured rates). Beside
// offload_plan.h rather than in it so that the planner stays free of nlohmann.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include "fuyou/offload/offload_plan.h"

namespace sparsetrain::fuyou {

// {"what", "bytes"}.
void to_json(nlohmann::json& j, const PlanItem& item);
void to_json(nlohmann::json& j, const ActivationPlan& activations);

// Where the states, blocks, inputs and gradient buffers live ("states": "cpu" | "store", the
// counts and flags), each tier's items and total bytes, and the bytes and FLOPs per iteration
// ("per_iteration"). Not the bound: see offload_bound_json.
void to_json(nlohmann::json& j, const OffloadPlan& plan);

// {"bound_seconds", "binding", "terms": {name: seconds}} ("terms" absent when there are none).
nlohmann::json offload_bound_json(const OffloadPlan& plan);

}  // namespace sparsetrain::fuyou
