// executor.h - a dedicated worker thread that runs a model's jobs one at a time.
// Long native work must not sit on the libuv pool (shared with fs, dns and sharp), and libtorch
// fixes its intra-op thread count per OS thread: this thread sets it once, at start.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace inpformer {

class SerialExecutor {
 public:
  // threads: libtorch's and OpenBLAS's threads for this executor's jobs; 0: the cores other
  // processes leave free (cpu_load.h), decided before each job. exclusiveCompute: run each job
  // holding the process-wide compute lock (see computeMutex).
  SerialExecutor(int threads, bool exclusiveCompute);
  ~SerialExecutor();  // finishes queued jobs, then joins
  SerialExecutor(const SerialExecutor&) = delete;
  SerialExecutor& operator=(const SerialExecutor&) = delete;

  // computeTurn: the job may call the system BLAS, so it waits for the compute lock (when this
  // executor takes it at all). Inference that never reaches the BLAS (cpu_gemm.h) passes false
  // and runs beside another model's training step instead of waiting for it.
  void post(std::function<void()> job, bool computeTurn = true);

 private:
  void loop(int threads, bool exclusiveCompute);
  std::mutex mutex_;
  std::condition_variable cv_;
  struct Job {
    std::function<void()> run;
    bool computeTurn;
  };
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

// Model jobs of all models take turns on this lock. OpenBLAS 0.3.21 (Debian 12) deadlocks when
// two threads call sgemm at the same time (seen as a hang with two models training and
// predicting at once: one caller spinning in exec_blas, the other blocked on its mutex), and
// on a CPU one job's matrix products already use every core, so turns cost little.
std::mutex& computeMutex();

// OpenBLAS (pthreads build) registers a pthread_atfork handler that shuts its worker threads down
// before every fork; if a matrix product is running on another thread at that moment it waits
// for those workers forever. Node forks for every child_process spawn, so a service that spawns
// while a model computes would hang. This guard, registered after OpenBLAS and therefore run
// before it, takes the compute lock for the fork: the fork waits for the running job to end.
void installForkGuard();

// The cores this process may run on (sched_getaffinity), at least 1.
int availableCores();

}  // namespace inpformer
