// losses.h - INP-Former's two training losses.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace inpformer {

struct InpCoherence {
  torch::Tensor loss;          // scalar: mean over tokens of the distance below
  torch::Tensor distance;      // [B, N]: min over prototypes of 1 - cos(token, prototype)
  torch::Tensor clusterIndex;  // [B, N]: the nearest prototype
};

// INP coherence loss: every token should lie close to one of its image's prototypes.
// tokens [B, N, C], prototypes [B, M, C].
InpCoherence inpCoherenceLoss(const torch::Tensor& tokens, const torch::Tensor& prototypes);

// Soft-mining cosine loss (global_cosine_hm_adaptive): the mean over groups of
// 1 - cos(flatten(en), flatten(de)) per image; the gradient reaching each decoder token is
// re-weighted by (d / mean d)^power with d its own 1 - cos, so hard tokens dominate.
// The encoder side is detached. en, de: [B, C, h, w] per group.
torch::Tensor softMiningLoss(const std::vector<torch::Tensor>& en, const std::vector<torch::Tensor>& de,
                             double power = 3.0);

}  // namespace inpformer
