// The built-in demo text (data/fuyou/demo_text.txt, see data/fuyou/README.md), compiled into the
// library so `sparsetrain fuyou finetune` without --data works anywhere. ASCII English prose and
// code examples, 256 KiB; tokenise with TokenData::from_bytes (vocab 256).
#pragma once

#include <string_view>

namespace sparsetrain::fuyou {

std::string_view demo_text();

}  // namespace sparsetrain::fuyou
