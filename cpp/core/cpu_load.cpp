// cpu_load.cpp - free cores from /proc; OpenBLAS's thread count through dlsym.
#include "cpu_load.h"

#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

#include "executor.h"

namespace inpformer {
namespace {

struct Sample {
  std::chrono::steady_clock::time_point at;
  double allBusyTicks = 0;   // busy time of the CPUs this process may use, all processes
  double selfTicks = 0;      // this process's CPU time (all its threads)
  bool valid = false;
};

// Busy ticks (user, nice, system, irq, softirq, steal) of the CPUs in `set`, from /proc/stat.
bool readAllBusy(const cpu_set_t& set, double& busy) {
  std::ifstream in("/proc/stat");
  if (!in) return false;
  std::string line;
  busy = 0;
  while (std::getline(in, line)) {
    if (line.compare(0, 3, "cpu") != 0 || line.size() < 4 || line[3] < '0' || line[3] > '9') continue;
    std::istringstream fields(line.substr(3));
    int cpu = -1;
    double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    fields >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
    if (cpu >= 0 && cpu < CPU_SETSIZE && CPU_ISSET(cpu, &set)) busy += user + nice + system + irq + softirq + steal;
  }
  return true;
}

// utime + stime of this process, from /proc/self/stat (fields 14 and 15, after the command name).
bool readSelf(double& ticks) {
  std::ifstream in("/proc/self/stat");
  if (!in) return false;
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = all.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(all.substr(close + 2));
  std::string skip;
  for (int i = 3; i <= 13; ++i) fields >> skip;  // state .. cmajflt
  double utime = 0, stime = 0;
  fields >> utime >> stime;
  ticks = utime + stime;
  return static_cast<bool>(fields);
}

}  // namespace

int freeCores() {
  static std::mutex mutex;
  static Sample last;
  static int cached = 0;
  std::lock_guard<std::mutex> lock(mutex);
  const int cores = availableCores();
  const auto now = std::chrono::steady_clock::now();
  if (last.valid && now - last.at < std::chrono::milliseconds(100) && cached > 0) return cached;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cores;
  Sample s;
  s.at = now;
  if (!readAllBusy(set, s.allBusyTicks) || !readSelf(s.selfTicks)) return cores;
  s.valid = true;
  int result = cores;
  if (last.valid) {
    const double seconds = std::chrono::duration<double>(now - last.at).count();
    const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
    // cores others kept busy on average since the last look; our own threads are not "others"
    const double others = ((s.allBusyTicks - last.allBusyTicks) - (s.selfTicks - last.selfTicks)) / (seconds * hz);
    // a core counts as taken when others kept it at least half busy: a busy-loop neighbour gets
    // only ~2/3 of a core while our own threads compete with it (libtorch 2.6, measured), so a
    // higher bar missed it; brief work elsewhere stays below half a core
    result = std::max(1, cores - static_cast<int>(std::floor(std::max(0.0, others) + 0.5)));
  }
  last = s;
  cached = result;
  return result;
}

void setBlasThreads(int threads) {
  using SetThreads = void (*)(int);
  static const auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  static int current = 0;
  if (set != nullptr && threads > 0 && threads != current) {
    set(threads);
    current = threads;
  }
}

}  // namespace inpformer
