// per_image.h - a batch convolved one image at a time.
// oneDNN's CPU convolution first copies a batch with few channels into blocks of 16 channels:
// 5.3x a batch of RGB images (25 MiB for 8 at 224 px), 16x a batch of 1-channel anomaly maps.
// The tensor cache then keeps that block beside the smaller ones of the rest of the call. One
// image at a time the copy is one image's, at the same speed, and the outputs are bit-identical:
// a convolution's sums do not depend on the batch (core_test compares both ways).
#pragma once
#include <torch/torch.h>

#include <vector>

namespace inpformer {

template <typename Convolve>
torch::Tensor convolvePerImage(const torch::Tensor& batch, Convolve&& convolve) {
  if (batch.size(0) == 1) return convolve(batch);
  std::vector<torch::Tensor> outs;
  outs.reserve(static_cast<size_t>(batch.size(0)));
  for (int64_t i = 0; i < batch.size(0); ++i) outs.push_back(convolve(batch.slice(0, i, i + 1)));
  return torch::cat(outs);
}

}  // namespace inpformer
