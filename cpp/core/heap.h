// heap.h - keep the large blocks tensors free for the next call instead of handing them back to
// the kernel. glibc serves blocks above a threshold with mmap and returns them at free; every
// inference then faults its activations in again, a page at a time, zeroed by the kernel. On
// these VMs a ViT-S/224 batch of 8 spent about a fifth of its time in page faults and ran
// 9.8-14.7 images/s from run to run; keeping blocks up to 32 MiB on the heap made it a steady
// 14.4 (docs/benchmarks.md). Peak memory is unchanged: the blocks are the ones a call needs anyway.
#pragma once

namespace inpformer {

// Sets glibc's mmap and trim thresholds once per process, unless the user tuned malloc through
// GLIBC_TUNABLES / MALLOC_*_ or set INP_FORMER_MALLOC=default. Returns whether it did.
bool keepTensorBlocksOnHeap();

}  // namespace inpformer
