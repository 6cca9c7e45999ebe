// Anchor translation unit of sparsetrain_fuyou: the library's other parts (trainer, CPU AdamW,
// safetensors) add their own sources to lib/fuyou/CMakeLists.txt; the SSD tensor store lives in
// sparsetrain_store (torch-free) and is linked publicly.
namespace sparsetrain::fuyou {
// Intentionally empty: a static library needs at least one object.
}  // namespace sparsetrain::fuyou
