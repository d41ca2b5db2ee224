// trainer.h - one optimisation step of the INP-Former recipe and the state a resume needs.
#pragma once
#include <torch/torch.h>

#include <optional>
#include <string>

#include "feature_cache.h"
#include "inp_former.h"
#include "optimizer.h"

namespace inpformer {

struct TrainOptions {
  // A run's options, all set from lib/model/options.ts's resolved record (no defaults here).
  int64_t totalSteps = 0;
  int64_t warmupSteps = 0;
  double learningRate = 0;
  double finalLearningRate = 0;
  double weightDecay = 0;
  double gradClipNorm = 0;
  // Where the trainable layers' float32 CPU products run (cpu_gemm.h; fit's matmul).
  enum class Products {
    kLibtorch,         // forward and backward libtorch's: the reference's roundings throughout
    kOneDnnGradients,  // libtorch's forward (every value the reference's), oneDNN's gradients
    kOneDnn,           // forward and backward oneDNN's: fastest, not the reference's forward
  };
  Products products = Products::kLibtorch;
  // Mixed precision (fit's precision 'bfloat16'): every matrix product in bfloat16, the rest,
  // the weights and the optimizer in float32 (cpu_gemm.h's BFloat16Products).
  bool bfloat16Products = false;
  // Bytes of encoder outputs kept across epochs for images the steps name by key
  // (feature_cache.h); 0 keeps none.
  int64_t featureCacheBytes = 0;
  // The recipe's constants (INP_Former_Single_Class.py), not options.
  double inpLossWeight = 0.2;
  double softMiningPower = 3.0;
};

// fit's matmul names for TrainOptions::Products ('libtorch', 'auto', 'onednn'); nullopt for others.
std::optional<TrainOptions::Products> trainableProductsNamed(const std::string& name);

struct StepStats {
  int64_t step = 0;  // 1-based, over the whole run (resumes continue the count)
  double lr = 0, loss = 0, lossCos = 0, inpLoss = 0, gradNorm = 0;
  double reluMargin = 0;  // smallest |cos| at a decoder ReLU this step (see InpGuidedAttention)
  int64_t encodedImages = 0;  // images the encoder ran on this step (the others came from the feature cache)
  int64_t cachedImages = 0, cachedBytes = 0;  // the feature cache after this step
};

class Trainer {
 public:
  Trainer(InpFormerNet net, TrainOptions options);

  // loss = softMiningLoss(en, de) + w * coherence; backward; clip; StableAdamW at schedule[step-1].
  // keys, when given, name the batch's images for the feature cache (one each).
  StepStats step(const torch::Tensor& batch, const std::vector<int64_t>& keys = {});

  int64_t stepsDone() const { return optimizer_.state().step; }
  double learningRateAt(int64_t step) const;  // 1-based
  const StableAdamW::State& optimizerState() const { return optimizer_.state(); }
  void setOptimizerState(StableAdamW::State s) { optimizer_.setState(std::move(s)); }
  const TrainOptions& options() const { return options_; }

 private:
  InpFormerNet net_;
  TrainOptions options_;
  std::vector<torch::Tensor> params_;
  StableAdamW optimizer_;
  std::vector<double> schedule_;
  EncoderFeatureCache featureCache_;
};

}  // namespace inpformer
