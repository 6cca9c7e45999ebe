// Embeds data/fuyou/demo_text.txt with the assembler's .incbin (path from CMake as
// SPARSETRAIN_DEMO_TEXT_PATH; CMake's OBJECT_DEPENDS rebuilds this file when the text changes).
#include "fuyou/model/demo_text.h"

#define SPARSETRAIN_STR2(x) #x
#define SPARSETRAIN_STR(x) SPARSETRAIN_STR2(x)

asm(".section .rodata\n"
    ".balign 16\n"
    "sparsetrain_fuyou_demo_text_begin:\n"
    ".incbin \"" SPARSETRAIN_STR(SPARSETRAIN_DEMO_TEXT_PATH) "\"\n"
    "sparsetrain_fuyou_demo_text_end:\n"
    ".byte 0\n"
    ".previous\n");

extern "C" const char sparsetrain_fuyou_demo_text_begin[];
extern "C" const char sparsetrain_fuyou_demo_text_end[];

namespace sparsetrain::fuyou {

std::string_view demo_text() {
  return {sparsetrain_fuyou_demo_text_begin,
          static_cast<std::size_t>(sparsetrain_fuyou_demo_text_end -
                                   sparsetrain_fuyou_demo_text_begin)};
}

}  // namespace sparsetrain::fuyou
