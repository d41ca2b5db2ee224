// preprocess.h - anomalib's default image transform on decoded pixels: to float in [0, 1],
// resize (bilinear, antialias), centre crop, ImageNet mean/std.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace inpformer {

struct RawImage {
  const uint8_t* data = nullptr;  // interleaved, row-major; 3 (RGB) channels
  int64_t height = 0, width = 0;
};

// -> [N, 3, crop, crop] float32 on the CPU.
torch::Tensor preprocessImages(const std::vector<RawImage>& images, int64_t resize, int64_t crop);

}  // namespace inpformer
