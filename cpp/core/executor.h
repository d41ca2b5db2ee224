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
  explicit SerialExecutor(int threads);
  ~SerialExecutor();  // finishes queued jobs, then joins
  SerialExecutor(const SerialExecutor&) = delete;
  SerialExecutor& operator=(const SerialExecutor&) = delete;

  void post(std::function<void()> job);

 private:
  void loop(int threads);
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

// The cores this process may run on (sched_getaffinity), at least 1.
int availableCores();

}  // namespace inpformer
