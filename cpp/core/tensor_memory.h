// tensor_memory.h - large CPU tensor blocks kept for the next call instead of returned at free.
// glibc serves large blocks with mmap and unmaps them at free, so every inference faults its
// activations in again, a zeroed 4 KiB page at a time: on these VMs a ViT-S/224 batch of 8 ran
// 7.6-11.8 images/s from run to run that way. Transparent huge pages did not help (9.2-10.4:
// the kernel still zeroes every page). Raising glibc's thresholds so freed blocks stay on its
// heaps made it a steady 13.4-13.7 but held ~110 MiB more at peak, spread over per-thread arenas.
// This cache keeps libtorch's own freed blocks of 1 MiB or more, by size, and hands them out
// again: the next call reuses the last call's memory without faults or zeroing. Blocks not
// reused within 2 s go back to the system at the next allocation or free.
#pragma once
#include <cstddef>

#include "scoped_flag.h"

namespace inpformer {

// Installs the caching allocator for libtorch's CPU tensors once per process, unless
// INP_FORMER_TENSOR_CACHE=0 is set. Returns whether it is in use.
bool cacheLargeTensorBlocks();

// Bytes held in the cache now (freed, kept for reuse).
size_t cachedTensorBytes();

// Hands every cached block back to the system: after training (its activations are larger than
// inference's) and when a model is disposed.
void releaseCachedTensorBlocks();

// While one lives on a thread, large blocks freed there go back to the system at once instead of
// into the cache: for frees that will not recur, such as a network's float32 weights replaced
// by bfloat16 ones at construction (cached, they stacked onto the new copy at the load's peak).
using TensorCacheBypass = ScopedThreadFlag<struct TensorCacheBypassTag>;

}  // namespace inpformer
