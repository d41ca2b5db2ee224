// losses.cpp - INP coherence loss and soft-mining cosine loss (upstream utils.py / models/uad.py).
#include "losses.h"

#include "cosine.h"

namespace F = torch::nn::functional;

namespace inpformer {

InpCoherence inpCoherenceLoss(const torch::Tensor& tokens, const torch::Tensor& prototypes) {
  auto distribution = 1.0 - cosineMatrix(tokens, prototypes);
  auto [distance, index] = torch::min(distribution, 2);
  return {distance.mean(), distance, index};
}

torch::Tensor softMiningLoss(const std::vector<torch::Tensor>& en, const std::vector<torch::Tensor>& de,
                             double power) {
  torch::Tensor loss;
  for (size_t i = 0; i < en.size(); ++i) {
    auto a = en[i].detach();
    auto b = de[i];
    torch::Tensor factor;
    {
      torch::NoGradGuard noGrad;
      auto pointDist = (1.0 - F::cosine_similarity(a, b, F::CosineSimilarityFuncOptions().dim(1))).unsqueeze(1);
      // An integral exponent takes ATen's x*x*x path, as Python's `** 3` does.
      const torch::Scalar exponent = power == static_cast<double>(static_cast<int64_t>(power))
                                         ? torch::Scalar(static_cast<int64_t>(power))
                                         : torch::Scalar(power);
      factor = (pointDist / pointDist.mean()).pow(exponent);
    }
    auto term = torch::mean(1.0 - F::cosine_similarity(a.reshape({a.size(0), -1}), b.reshape({b.size(0), -1}),
                                                        F::CosineSimilarityFuncOptions().dim(1)));
    loss = loss.defined() ? loss + term : term;
    if (b.requires_grad()) {
      b.register_hook([factor](torch::Tensor grad) { return grad * factor.expand_as(grad); });
    }
  }
  return loss / static_cast<double>(en.size());
}

}  // namespace inpformer
