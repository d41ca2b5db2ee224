// activations.h - GELU and softmax that overwrite their input when no gradient needs it.
// In inference (and the frozen encoder in training) an MLP's hidden [B, N, 4C] and attention's
// scores [B, H, N, N] are the largest tensors of a block; out-of-place, each briefly exists twice.
// The same kernels run either way, so the values are bit-identical (core_test checks it).
#pragma once
#include <torch/torch.h>

namespace inpformer {

// t must be a fresh result the caller owns (a product's output), not a view others read.
inline torch::Tensor geluOf(torch::Tensor t) { return t.requires_grad() ? torch::gelu(t) : torch::gelu_(t); }

inline torch::Tensor softmaxLastDim(torch::Tensor t) {
  if (t.requires_grad() || !t.is_contiguous()) return t.softmax(-1);
  return at::_softmax_out(t, t, -1, false);
}

}  // namespace inpformer
