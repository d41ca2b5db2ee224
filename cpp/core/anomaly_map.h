// anomaly_map.h - from encoder/decoder feature groups to an anomaly map and an image score,
// as anomalib's InpFormerModel does it in eval mode.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace inpformer {

// 1 - cos over channels, per group: [B, G, h, w].
torch::Tensor cosineDistanceGroups(const std::vector<torch::Tensor>& en, const std::vector<torch::Tensor>& de);

// Per group 1 - cos, bilinear upsampling (align_corners=True) to outH x outW, mean over
// groups: [B, 1, outH, outW].
torch::Tensor anomalyMapRaw(const std::vector<torch::Tensor>& en, const std::vector<torch::Tensor>& de,
                            int64_t outH, int64_t outW);

// kornia's normalised 2-D Gaussian kernel (anomalib GaussianBlur2d): [1, 1, k, k].
torch::Tensor gaussianKernel2d(int64_t kernelSize, double sigma, const torch::TensorOptions& options);

// Reflect padding (no repeated edge pixel) then a 'valid' convolution with the kernel.
torch::Tensor gaussianBlur(const torch::Tensor& map, const torch::Tensor& kernel);

// Mean of the largest int(H * W * ratio) values of each map: [B].
torch::Tensor topRatioScore(const torch::Tensor& map, double ratio = 0.01);

}  // namespace inpformer
