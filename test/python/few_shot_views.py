"""The 22 few-shot views of issue 14 computed with Python's torch, for test/few-shot.test.js.

Reads float32 images [N, 3, H, W] from argv[1] (shape in argv[2], comma-separated), writes
the views [22 N, 3, H, W] as float32 to argv[3], image by image in the order of
cpp/core/augment.h. Written from the issue's description of upstream's utils.augmentation:
affine_grid + grid_sample (bilinear, reflection padding; align_corners left at its default,
False), a horizontal flip, ITU-R 601 greyscale repeated to 3 channels.
"""
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F


def warp(x, theta):
    theta = torch.tensor(theta, dtype=torch.float64).to(torch.float32).view(1, 2, 3).expand(x.size(0), 2, 3)
    grid = F.affine_grid(theta, list(x.size()), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def rotate(x, angle):
    c, s = math.cos(angle), math.sin(angle)
    return warp(x, [c, -s, 0, s, c, 0])


def views(x):
    out = [x]
    for k in (1, 2, 3, 4):
        out += [rotate(x, -k * math.pi / 16), rotate(x, k * math.pi / 16)]
    for t in (0.2, 0.1):
        for sx, sy in ((1, 1), (-1, 1), (1, -1), (-1, -1)):
            out.append(warp(x, [1, 0, sx * t, 0, 1, sy * t]))
    out.append(torch.flip(x, dims=[3]))
    grey = (x[:, 0] * 0.299 + x[:, 1] * 0.587 + x[:, 2] * 0.114).unsqueeze(1)
    out.append(grey.repeat(1, 3, 1, 1))
    for k in (1, 2, 3):
        out.append(rotate(x, k * math.pi / 2))
    return torch.stack(out, 1).reshape(-1, 3, x.size(2), x.size(3))


if __name__ == "__main__":
    torch.set_num_threads(1)
    shape = [int(v) for v in sys.argv[2].split(",")]
    x = torch.from_numpy(np.fromfile(sys.argv[1], dtype=np.float32).reshape(shape))
    views(x).numpy().astype(np.float32).tofile(sys.argv[3])
