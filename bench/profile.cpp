// profile.cpp - libtorch's profiler over the core's inference, or its exact training step, on
// random weights of a real shape, no Node involved: writes a Chrome trace that bench/profile.js
// sums per op (self time).
//   inp_former_profile DIM DEPTH HEADS REGISTERS SIZE BATCH ITERS TRACE.json [float32|bfloat16] [infer|train] [auto|libtorch|onednn]
#include <torch/torch.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

#include "core/model.h"
#include "core/tensor_memory.h"
#include "test/upstream_config.h"

using namespace inpformer;

int main(int argc, char** argv) {
  if (argc < 9) {
    std::cerr << "usage: inp_former_profile DIM DEPTH HEADS REGISTERS SIZE BATCH ITERS TRACE.json [precision]\n";
    return 2;
  }
  const auto arg = [&](int i) { return std::atoll(argv[i]); };
  const auto c = upstreamConfig(arg(1), arg(2), arg(3), arg(4));
  const std::string precision = argc > 9 ? argv[9] : "float32";
  const bool train = argc > 10 && std::string(argv[10]) == "train";
  // Training keeps a float32 model and takes bfloat16 as fit's precision does (mixed precision:
  // bfloat16 products, float32 weights), as bench/side-by-side.js's training rows run it.
  RuntimeOptions runtime{"cpu", train ? "float32" : precision, 0};
  const int threads = std::getenv("THREADS") ? std::atoi(std::getenv("THREADS")) : 2;
  at::set_num_threads(threads);
  cacheLargeTensorBlocks();  // as the addon does at load, unless INP_FORMER_TENSOR_CACHE=0
  InpFormerModel model(c, runtime);
  const auto size = arg(5), batch = arg(6), iters = arg(7);
  auto images = torch::randn({batch, 3, size, size});
  if (train) {
    model.initTrainable(0);
    TrainOptions o;  // the recipe's (lib/model/options.ts); products as fit's matmul (11th argument, default 'auto')
    const auto products = trainableProductsNamed(argc > 11 ? argv[11] : "auto");
    if (!products) {
      std::cerr << "matmul must be auto, libtorch or onednn\n";
      return 2;
    }
    o.products = *products;
    o.bfloat16Products = precision == "bfloat16";
    o.totalSteps = 2 + 2 * iters;
    o.warmupSteps = 1;
    o.learningRate = 1e-3;
    o.finalLearningRate = 1e-4;
    o.weightDecay = 1e-4;
    o.gradClipNorm = 0.1;
    model.beginTraining(o);
  }
  const auto run = [&] {
    if (train) model.trainStep(images);
    else model.infer(images, false);
  };
  for (int i = 0; i < 2; ++i) run();
  const auto plain0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) run();
  const double plain = std::chrono::duration<double>(std::chrono::steady_clock::now() - plain0).count();
  const auto t0 = std::chrono::steady_clock::now();
  {
    torch::autograd::profiler::RecordProfile guard(argv[8]);
    for (int i = 0; i < iters; ++i) run();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "{\"imagesPerSecond\":" << (batch * iters) / s
            << ",\"imagesPerSecondUnprofiled\":" << (batch * iters) / plain << ",\"threads\":" << threads << "}\n";
  return 0;
}
