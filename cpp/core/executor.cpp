// executor.cpp - SerialExecutor and core counting.
#include "executor.h"

#include "cpu_load.h"

#include <pthread.h>
#include <sched.h>
#include <torch/torch.h>

namespace inpformer {

int availableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const auto hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

std::mutex& computeMutex() {
  static std::mutex mutex;
  return mutex;
}

void installForkGuard() {
  static const bool installed = [] {
    // pthread_atfork prepare handlers run in reverse order of registration: ours, registered
    // after libopenblas was loaded, runs before OpenBLAS's thread shutdown.
    pthread_atfork([] { computeMutex().lock(); }, [] { computeMutex().unlock(); },
                   [] { computeMutex().unlock(); });
    return true;
  }();
  (void)installed;
}

SerialExecutor::SerialExecutor(int threads, bool exclusiveCompute)
    : thread_([this, threads, exclusiveCompute] { loop(threads, exclusiveCompute); }) {}

SerialExecutor::~SerialExecutor() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void SerialExecutor::post(std::function<void()> job, bool computeTurn) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back({std::move(job), computeTurn});
  }
  cv_.notify_one();
}

void SerialExecutor::loop(int threads, bool exclusiveCompute) {
  // threads <= 0: as many as the cores others leave free, decided again before each job
  const bool adaptive = threads <= 0;
  int current = adaptive ? availableCores() : threads;
  at::set_num_threads(current);
  const auto adaptThreads = [&] {
    if (!adaptive) return;
    const int free = freeCores();
    if (free != current) at::set_num_threads(current = free);
  };
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    if (exclusiveCompute && job.computeTurn) {
      std::lock_guard<std::mutex> turn(computeMutex());
      adaptThreads();
      setBlasThreads(current);  // OpenBLAS's pool is the process's: set for each model's turn
      job.run();  // jobs catch their own errors (they report through their promise)
    } else {
      adaptThreads();
      job.run();
    }
  }
}

}  // namespace inpformer
