// linear.h - the linear layer as Python's F.linear computes it.
// libtorch 1.13's C++ torch::nn::Linear / F::linear runs 3-D inputs as matmul followed by a
// separate bias add; Python's F.linear calls at::linear, which folds the batch dimensions and
// adds the bias inside one addmm. The roundings differ, and INP-Former's ReLU attention can
// turn a last-bit difference into a different gradient, so every layer here computes as addmm
// does: at::linear when autograd records it, oneDNN's sgemm onto the bias otherwise (cpu_gemm.h).
#pragma once
#include <torch/torch.h>

#include "cpu_gemm.h"

namespace inpformer {

inline torch::Tensor linear(const torch::nn::Linear& layer, const torch::Tensor& x) {
  return inpformer::linear(x, layer->weight, layer->bias);
}

}  // namespace inpformer
