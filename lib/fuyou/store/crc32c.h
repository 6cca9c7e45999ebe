// CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected), the per-extent checksum of the tensor
// store. Our own code: the SSE4.2 `crc32` instruction, 8 bytes per step, when the CPU has it
// (checked at run time), else a slicing-by-8 table. Standard check value: crc32c("123456789") =
// 0xE3069283. Not zlib's crc32 (a different polynomial).
#pragma once

#include <cstddef>
#include <cstdint>

namespace sparsetrain::fuyou {

// Extends `crc` (0 to start) over `bytes` bytes at `data`.
std::uint32_t crc32c(const void* data, std::size_t bytes, std::uint32_t crc = 0);
// The table version, always (for tests: both must agree).
std::uint32_t crc32c_portable(const void* data, std::size_t bytes, std::uint32_t crc = 0);
bool crc32c_hardware_available();

}  // namespace sparsetrain::fuyou
