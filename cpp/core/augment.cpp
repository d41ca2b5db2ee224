// augment.cpp - the 22 few-shot views (augment.h).
#include "augment.h"

#include <cmath>
#include <vector>

#include "errors.h"

namespace F = torch::nn::functional;

namespace inpformer {
namespace {

// One affine warp of a batch: theta [2, 3] applied through the normalised sampling grid.
torch::Tensor warp(const torch::Tensor& x, double a, double b, double tx, double c, double d, double ty) {
  auto theta = torch::tensor({a, b, tx, c, d, ty}, torch::kDouble).to(torch::kFloat).view({1, 2, 3}).expand({x.size(0), 2, 3});
  auto grid = F::affine_grid(theta, x.sizes(), /*align_corners=*/false);
  return F::grid_sample(x, grid, F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kReflection).align_corners(false));
}

torch::Tensor rotate(const torch::Tensor& x, double angle) {
  const double c = std::cos(angle), s = std::sin(angle);
  return warp(x, c, -s, 0, s, c, 0);
}

}  // namespace

torch::Tensor fewShotViews(const torch::Tensor& images) {
  if (images.dim() != 4 || images.size(1) != 3)
    throw CoreError(codes::kInvalidArgument, "few-shot views expect [N, 3, H, W] images");
  torch::NoGradGuard noGrad;
  const auto x = images.to(torch::kFloat).contiguous();
  const double pi = std::acos(-1.0);
  std::vector<torch::Tensor> views{x};
  for (double k : {1.0, 2.0, 3.0, 4.0}) {
    views.push_back(rotate(x, -k * pi / 16));
    views.push_back(rotate(x, k * pi / 16));
  }
  for (double t : {0.2, 0.1}) {
    for (auto [sx, sy] : {std::pair{1, 1}, {-1, 1}, {1, -1}, {-1, -1}}) views.push_back(warp(x, 1, 0, sx * t, 0, 1, sy * t));
  }
  views.push_back(x.flip({3}));
  const auto grey = (x.select(1, 0) * 0.299 + x.select(1, 1) * 0.587 + x.select(1, 2) * 0.114).unsqueeze(1);
  views.push_back(grey.expand({-1, 3, -1, -1}).contiguous());
  for (double k : {1.0, 2.0, 3.0}) views.push_back(rotate(x, k * pi / 2));
  // [22, N, 3, H, W] -> image by image: [N, 22, 3, H, W] -> [22 N, 3, H, W]
  return torch::stack(views, 1).reshape({-1, 3, x.size(2), x.size(3)}).contiguous();
}

}  // namespace inpformer
