// StepJournal (see step_journal.h).
#include "fuyou/offload/step_journal.h"

#include <array>
#include <cstring>
#include <string>

#include "fuyou/store/crc32c.h"
#include "fuyou/store/tensor_store.h"

namespace sparsetrain::fuyou {

namespace {

constexpr std::uint64_t kRecordBytes = 4096;
constexpr std::int64_t kMagic = 0x4c4e524a54535053;  // "SPSTJRNL"

// A record's words: the fields, then the CRC-32C of the words before it.
enum Word : int {
  kMagicWord,
  kSequence,
  kStep,
  kDone,
  kScaled,
  kScale,
  kLoss,
  kNorm,
  kLr,
  kCrc,
  kWords
};

std::string record_name(std::uint64_t copy) { return "train.journal." + std::to_string(copy); }

std::int64_t bits_of(double x) {
  std::int64_t b = 0;
  std::memcpy(&b, &x, sizeof b);
  return b;
}
double double_of(std::int64_t b) {
  double x = 0;
  std::memcpy(&x, &b, sizeof x);
  return x;
}
std::int64_t crc_of(const std::int64_t* words) {
  return crc32c(words, kCrc * sizeof(std::int64_t));
}

}  // namespace

void StepJournal::define(TensorStore& store) {
  for (std::uint64_t copy = 0; copy < 2; ++copy) {
    store.define(record_name(copy), StoreDType::kI64,
                 {static_cast<std::int64_t>(kRecordBytes / sizeof(std::int64_t))},
                 TensorKind::kScratch);
  }
}

StepJournal::StepJournal(TensorStore& store) : store_(store), buffer_(kRecordBytes) {}

std::optional<SealedStep> StepJournal::read() {
  std::optional<SealedStep> newest;
  auto* w = reinterpret_cast<std::int64_t*>(buffer_.data());
  for (std::uint64_t copy = 0; copy < 2; ++copy) {
    store_.read(record_name(copy), w, 0, kRecordBytes).get();
    if (w[kMagicWord] != kMagic || w[kCrc] != crc_of(w)) continue;  // never written, or torn
    const auto sequence = static_cast<std::uint64_t>(w[kSequence]);
    if (newest && sequence <= sequence_) continue;
    sequence_ = sequence;
    newest = SealedStep{w[kStep],
                        w[kDone],
                        double_of(w[kScale]),
                        w[kScaled] != 0,
                        double_of(w[kLoss]),
                        double_of(w[kNorm]),
                        double_of(w[kLr])};
  }
  return newest;
}

void StepJournal::write(const SealedStep& record) {
  auto* w = reinterpret_cast<std::int64_t*>(buffer_.data());
  std::memset(w, 0, kRecordBytes);
  ++sequence_;
  const std::array<std::int64_t, kCrc> fields{kMagic,
                                              static_cast<std::int64_t>(sequence_),
                                              record.step,
                                              record.pieces_done,
                                              record.scaled ? 1 : 0,
                                              bits_of(record.scale),
                                              bits_of(record.loss),
                                              bits_of(record.grad_norm),
                                              bits_of(record.lr)};
  std::memcpy(w, fields.data(), sizeof fields);
  w[kCrc] = crc_of(w);
  store_.write(record_name(sequence_ % 2), w, 0, kRecordBytes).get();
  store_.sync();
}

}  // namespace sparsetrain::fuyou
