// cosine.h - unit vectors and cosine similarities whose forward is libtorch's own ops, bit for bit
// (the decoder's cosines are its ReLU scores, the coherence loss a reported value), and whose
// gradients are the closed forms. Autograd's backward of F::normalize and F::cosine_similarity
// differentiates each op (the division, its broadcast denominator, the clamp, the norm; in
// libtorch 2.x also a [B, N, M, C] product for the coherence loss): 8 decoder normalisations and
// that loss took ~100 ms of a ViT-S/14 224 px batch-8 step on libtorch 2.6. A gradient's last bits
// differ from autograd's, as with another kernel; no forward value does.
#pragma once
#include <torch/torch.h>

namespace inpformer {

// F::normalize(x, {p 2, dim -1, eps 1e-12}): x / max(|x|, eps) along the last dimension.
torch::Tensor unitVectors(const torch::Tensor& x);

// cos[b, n, m] = F::cosine_similarity(a[b, n], c[b, m]) over the last dimension, as
// F::cosine_similarity(a.unsqueeze(2), c.unsqueeze(1), dim -1) computes it: a [B, N, C], c [B, M, C].
// The closed-form gradient (two small batched products) is taken where every row's norm is far
// from cosine_similarity's eps; otherwise autograd differentiates libtorch's ops as they are.
torch::Tensor cosineMatrix(const torch::Tensor& a, const torch::Tensor& c);

}  // namespace inpformer
