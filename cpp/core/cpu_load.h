// cpu_load.h - how many of this process's cores other processes leave free, and OpenBLAS's
// thread count. With a busy neighbour on one of 2 cores, a job split over 2 threads waits at
// every parallel region and every matrix product for the thread that shares its core with the
// neighbour: 14-20x slower than 1 thread (libtorch 1.13). Models whose thread count is not
// fixed run each job with the cores that are free.
#pragma once

namespace inpformer {

// The cores this process may use (affinity), less those other processes kept busy since the
// previous look (from /proc/stat and /proc/self/stat; looked at most every 100 ms), at least 1.
// Without /proc, all of them.
int freeCores();

// OpenBLAS's own thread count (process-wide; its matrix products do not use libtorch's OpenMP
// threads). Found at run time: a no-op with another BLAS. Call it holding the compute lock.
void setBlasThreads(int threads);

}  // namespace inpformer
