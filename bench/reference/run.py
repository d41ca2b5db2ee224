"""The Python side of bench/side-by-side.js.

  run.py weights FILE --dim D --depth N --heads H --registers R [--seed S]
      random weights of that shape (upstream INP-Former names), saved with torch.save
  run.py input FILE --batch B --size PX [--seed S]
      a normalised input batch, raw float32 (the same bytes both sides read)
  run.py infer WEIGHTS INPUT --batch B --size PX --iters K
      inference timing of the plain-PyTorch model (bench/reference/inp_former.py):
      JSON { imagesPerSecond, peakRssMiB, scores }
bench/side-by-side.js runs it with and without OMP_WAIT_POLICY=PASSIVE and keeps the better.
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inp_former import DinoViT, InpFormer, anomaly_map  # noqa: E402

TARGETS = {12: [2, 3, 4, 5, 6, 7, 8, 9], 24: [4, 6, 8, 10, 12, 14, 16, 18]}
GROUPS = [[0, 1, 2, 3], [4, 5, 6, 7]]


def build(dim, depth, heads, registers):
    enc = DinoViT(dim, depth, heads, registers)
    return InpFormer(enc, TARGETS[depth], GROUPS, GROUPS, heads=heads)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what")
    p.add_argument("files", nargs="+")
    for k in ["dim", "depth", "heads", "registers", "batch", "size", "iters"]:
        p.add_argument(f"--{k}", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.what == "weights":
        torch.manual_seed(a.seed)
        model = build(a.dim, a.depth, a.heads, a.registers)
        with torch.no_grad():
            for name, t in model.state_dict().items():
                if name.endswith("gamma"):  # LayerScale
                    t.uniform_(0.2, 1.0)
                elif name.endswith("learn_scale") or ("norm" in name and name.endswith("weight")):
                    t.copy_(1 + 0.1 * torch.randn_like(t))
                else:
                    t.normal_(0, 0.05 if t.dim() > 1 else 0.02)
        torch.save(model.state_dict(), a.files[0])
    elif a.what == "input":
        g = torch.Generator().manual_seed(a.seed)
        torch.randn(a.batch, 3, a.size, a.size, generator=g).numpy().astype("<f4").tofile(a.files[0])
    elif a.what == "infer":
        sd = torch.load(a.files[0], map_location="cpu")
        dim = sd["prototype_token"].shape[1]
        depth = len({k.split(".")[2] for k in sd if k.startswith("encoder.blocks.")})
        heads = sd["decoder.0.attn.learn_scale"].shape[0]
        registers = sd["encoder.register_tokens"].shape[1] if "encoder.register_tokens" in sd else 0
        model = build(dim, depth, heads, registers)
        model.load_state_dict(sd, strict=True)
        model.eval()
        del sd
        x = torch.from_numpy(np.fromfile(a.files[1], dtype="<f4").reshape(a.batch, 3, a.size, a.size))
        times = []
        with torch.inference_mode():
            for i in range(a.iters + 1):  # the first run warms up
                t0 = time.perf_counter()
                en, de, _ = model(x)
                _, _, scores = anomaly_map(en, de, (a.size, a.size))
                if i:
                    times.append(time.perf_counter() - t0)
        times.sort()
        print(json.dumps({
            "imagesPerSecond": a.batch / times[len(times) // 2],
            "peakRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "scores": scores.tolist(),
        }))


if __name__ == "__main__":
    main()
