// optimizer.h - StableAdamW, gradient-norm clipping and the warm-up + cosine learning-rate
// schedule of the INP-Former recipe (Dinomaly's optimizers/StableAdamW.py and utils.py).
#pragma once
#include <torch/torch.h>

#include <vector>

namespace inpformer {

// AdamW with amsgrad whose step is divided by max(1, RMS(g / denom)) per tensor
// ("Stable and low-precision training for large-scale vision-language models").
class StableAdamW {
 public:
  struct Options {
    double betas1 = 0.9, betas2 = 0.999, eps = 1e-10, weightDecay = 1e-4, clipThreshold = 1.0;
    bool amsgrad = true;
  };
  StableAdamW(std::vector<torch::Tensor> params, Options options);

  // One step at learning rate lr.
  void step(double lr);

  // Moments and step count, for checkpoints (resume must equal an uninterrupted run).
  struct State {
    int64_t step = 0;
    std::vector<torch::Tensor> expAvg, expAvgSq, maxExpAvgSq;
  };
  const State& state() const { return state_; }
  void setState(State s);

 private:
  std::vector<torch::Tensor> params_;
  Options opt_;
  State state_;
  // Room for one parameter's denominator and g / denom, as large as the largest parameter and
  // reused by each (see step).
  torch::Tensor denomScratch_, ratioScratch_;
};

// torch.nn.utils.clip_grad_norm_: total 2-norm of all gradients (returned, before clipping),
// then every gradient scaled by min(1, maxNorm / (total + 1e-6)).
double clipGradNorm(const std::vector<torch::Tensor>& params, double maxNorm);

// WarmCosineScheduler: linspace(start, base, warmup) then base -> final along a half cosine.
// Step k (1-based) of training uses schedule[k - 1]; past the end, the final value.
std::vector<double> warmCosineSchedule(double base, double finalValue, int64_t totalSteps, int64_t warmupSteps,
                                       double start = 0.0);

}  // namespace inpformer
