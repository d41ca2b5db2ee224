// augment.h - few-shot augmentation: each pre-processed image becomes 22 views, as upstream's
// few-shot setting (utils.augmentation) expands its K shots before training.
#pragma once
#include <torch/torch.h>

namespace inpformer {

// The number of views fewShotViews() makes of each image.
constexpr int64_t kFewShotViews = 22;

// [N, 3, H, W] pre-processed (normalised) images -> [22 N, 3, H, W], image by image, the views of
// each in this order: the image; rotations by -pi/16, pi/16, -pi/8, pi/8, -3pi/16, 3pi/16,
// -pi/4, pi/4; translations by (0.2, 0.2), (-0.2, 0.2), (0.2, -0.2), (-0.2, -0.2), (0.1, 0.1),
// (-0.1, 0.1), (0.1, -0.1), (-0.1, -0.1) of the normalised grid; a horizontal flip; greyscale
// (ITU-R 601: 0.299 R + 0.587 G + 0.114 B, repeated to 3 channels); rotations by 90, 180 and
// 270 degrees. Rotations and translations are affine_grid + grid_sample (bilinear, reflection
// padding, align_corners false, libtorch's defaults). Float32 in, float32 out, on the CPU.
torch::Tensor fewShotViews(const torch::Tensor& images);

}  // namespace inpformer
