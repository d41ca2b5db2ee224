// trainer.cpp - the training step of INP_Former_Single_Class.py.
#include "trainer.h"

#include "losses.h"

#include <cmath>
#include <optional>

#include "cpu_gemm.h"
#include "errors.h"

namespace inpformer {
namespace {
std::vector<torch::Tensor> tensorsOf(const std::vector<std::pair<std::string, torch::Tensor>>& named) {
  std::vector<torch::Tensor> out;
  for (const auto& kv : named) out.push_back(kv.second);
  return out;
}
// The recipe's StableAdamW: betas (0.9, 0.999), eps 1e-10, amsgrad, clip threshold 1 (the
// Options defaults); only the weight decay is an option of the run.
StableAdamW::Options adamOptions(const TrainOptions& options) {
  StableAdamW::Options o;
  o.weightDecay = options.weightDecay;
  return o;
}

}  // namespace

Trainer::Trainer(InpFormerNet net, TrainOptions options)
    : net_(std::move(net)),
      options_(options),
      params_(tensorsOf(net_->trainableParameters())),
      optimizer_(params_, adamOptions(options)),
      schedule_(warmCosineSchedule(options.learningRate, options.finalLearningRate, options.totalSteps,
                                   options.warmupSteps)),
      featureCache_(options.featureCacheBytes) {
  for (auto& p : params_) p.set_requires_grad(true);
}

std::optional<TrainOptions::Products> trainableProductsNamed(const std::string& name) {
  if (name == "libtorch") return TrainOptions::Products::kLibtorch;
  if (name == "auto") return TrainOptions::Products::kOneDnnGradients;
  if (name == "onednn") return TrainOptions::Products::kOneDnn;
  return std::nullopt;
}

double Trainer::learningRateAt(int64_t step) const {
  const auto i = step - 1;
  if (i < 0) return schedule_.empty() ? options_.learningRate : schedule_.front();
  if (i >= static_cast<int64_t>(schedule_.size())) return options_.finalLearningRate;
  return schedule_[static_cast<size_t>(i)];
}

StepStats Trainer::step(const torch::Tensor& batch, const std::vector<int64_t>& keys) {
  using Products = TrainOptions::Products;
  RecordedProductsOnOneDnn products(options_.products == Products::kOneDnn);
  RecordedGradientsOnOneDnn gradients(options_.products != Products::kLibtorch);
  BFloat16Products mixedPrecision(options_.bfloat16Products);
  // Products on the BLAS (libtorch's forward, and its backward with matmul 'libtorch') run on
  // OpenBLAS's own pool, whose threads are not libtorch's OpenMP workers. Those workers spin for
  // a while after each parallel op (libgomp's default wait) and would take the cores OpenBLAS's
  // next product needs: the exact step ran 2.6-3.1 images/s against 4.3-5.0 with a short spin
  // (ViT-S/14 224 px, batch 8). So while the BLAS has products to do, everything else but the
  // frozen encoder (oneDNN's products where found, no BLAS) runs on one OpenMP thread and the
  // workers sleep (docs/libtorch.md); a backward on oneDNN gets every thread again. A user who
  // chose a short spin or passive waiting keeps every thread: nothing spins then.
  const bool blasSpinsAgainstOpenMp = !options_.bfloat16Products && batch.device().is_cpu() && openMpWorkersSpinLong();
  const bool oneDnnFound = inferenceAvoidsBlas();
  const bool forwardOnBlas = blasSpinsAgainstOpenMp && (options_.products != Products::kOneDnn || !oneDnnFound);
  const bool backwardOnBlas = blasSpinsAgainstOpenMp && (options_.products == Products::kLibtorch || !oneDnnFound);
  const int encoderThreads = forwardOnBlas && oneDnnFound ? openMpThreads() : 0;
  std::optional<OpenMpThreadCap> oneThread;
  if (forwardOnBlas) oneThread.emplace(1);
  net_->train();
  StepStats s;
  s.encodedImages = batch.size(0);
  auto out = keys.empty() ? net_->forward(batch, /*withCoherence=*/true, encoderThreads)
                          : net_->forward(featureCache_.encode(*net_, batch, keys, encoderThreads, &s.encodedImages),
                                          /*withCoherence=*/true);
  s.cachedImages = static_cast<int64_t>(featureCache_.size());
  s.cachedBytes = featureCache_.bytes();
  auto lossCos = softMiningLoss(out.en, out.de, options_.softMiningPower);
  auto loss = lossCos + options_.inpLossWeight * out.coherence.loss;
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();  // zero_grad(set_to_none=True)
  oneThread.reset();
  if (backwardOnBlas) oneThread.emplace(1);
  loss.backward();
  s.step = stepsDone() + 1;
  s.gradNorm = clipGradNorm(params_, options_.gradClipNorm);
  s.loss = loss.item<double>();
  s.lossCos = lossCos.item<double>();
  s.inpLoss = out.coherence.loss.item<double>();
  s.reluMargin = out.reluMargin;
  // A non-finite loss or gradient would write NaN into every weight and moment: stop before
  // the update, so the model keeps the weights of the last finite step.
  if (!std::isfinite(s.loss) || !std::isfinite(s.gradNorm)) {
    for (auto& p : params_) p.mutable_grad() = torch::Tensor();
    throw CoreError(codes::kDiverged, "training diverged at step " + std::to_string(s.step) + ": loss " +
                                          std::to_string(s.loss) + ", gradient norm " + std::to_string(s.gradNorm) +
                                          "; the weights are those of the last finite step (lower the learning rate, check the inputs)");
  }
  s.lr = learningRateAt(s.step);
  optimizer_.step(s.lr);
  return s;
}

}  // namespace inpformer
