// heap.cpp - glibc malloc thresholds for tensor-sized blocks.
#include "heap.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace inpformer {

bool keepTensorBlocksOnHeap() {
  static const bool done = [] {
#if defined(__GLIBC__)
    const char* choice = std::getenv("INP_FORMER_MALLOC");
    if (choice != nullptr && std::strcmp(choice, "default") == 0) return false;
    const char* tunables = std::getenv("GLIBC_TUNABLES");
    if (tunables != nullptr && std::strstr(tunables, "malloc") != nullptr) return false;
    if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr || std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr) return false;
    // 32 MiB is the largest mmap threshold glibc accepts on 64-bit (half its per-thread heap size);
    // a fixed threshold stops glibc's own adjustment, which would also have raised the trim
    // threshold to twice it: set that too (64 MiB of freed heap top kept; 512 MiB was no faster)
    return mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1 && mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024) == 1;
#else
    return false;
#endif
  }();
  return done;
}

}  // namespace inpformer
