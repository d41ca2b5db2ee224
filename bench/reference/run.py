"""The Python side of bench/side-by-side.js.

  run.py weights FILE --dim D --depth N --heads H --registers R [--seed S]
      random weights of that shape (upstream INP-Former names), saved with torch.save
  run.py input FILE --batch B --size PX [--seed S]
      a normalised input batch, raw float32 (the same bytes both sides read)
  run.py infer WEIGHTS INPUT --batch B --size PX --iters K
      inference timing of the plain-PyTorch model (bench/reference/inp_former.py):
      JSON { imagesPerSecond, peakRssMiB, scores }
  run.py train WEIGHTS INPUT --batch B --size PX --iters K
      training-step timing: the recipe's loss (soft-mining cosine loss with (d / mean d)^3
      gradient weights + 0.2 x the INP coherence loss), backward, grad-norm clip 0.1, and an
      AdamW step (amsgrad, eps 1e-10, wd 1e-4) standing in for upstream's StableAdamW (the same
      per-parameter element-wise work, less its RMS clip): JSON { imagesPerSecond, peakRssMiB, losses,
      encoderShare }, encoderShare being the part of a step the frozen encoder's forward takes
      (timed alone after the steps, same batch): 1 / (1 - encoderShare) bounds how much faster
      any implementation can train whose trainable layers run as fast as these
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
import torch.nn.functional as F
from torch import nn

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
    elif a.what in ("infer", "train"):
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
        if a.what == "train":
            train(model, x, a)
            return
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


def soft_mining_loss(en, de, power=3.0):
    """upstream's global_cosine_hm_percent with the percent-free soft weights: every token's
    gradient scaled by (d / mean d)^power, d = 1 - cos over channels."""
    loss = 0
    for a, b in zip(en, de):
        a = a.detach()
        with torch.no_grad():
            d = (1 - F.cosine_similarity(a, b, dim=1)).unsqueeze(1)
            factor = (d / d.mean()) ** power
        loss = loss + torch.mean(1 - F.cosine_similarity(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)))
        b.register_hook(lambda g, f=factor: g * f.expand_as(g))
    return loss / len(en)


def train(model, x, a):
    model.train()
    model.encoder.eval()
    trainable = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(trainable, lr=1e-3, betas=(0.9, 0.999), eps=1e-10, weight_decay=1e-4, amsgrad=True)
    times, losses = [], []
    for i in range(a.iters + 1):  # the first step warms up
        t0 = time.perf_counter()
        en, de, g_loss = model(x)
        loss = soft_mining_loss(en, de) + 0.2 * g_loss
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(trainable, 0.1)
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    times.sort()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    encoder_times = []
    with torch.no_grad():
        for i in range(a.iters + 1):
            t0 = time.perf_counter()
            h = model.encoder.prepare_tokens(x)
            for blk in model.encoder.blocks[: max(model.target_layers) + 1]:
                h = blk(h)
            if i:
                encoder_times.append(time.perf_counter() - t0)
    encoder_times.sort()
    step = times[len(times) // 2]
    print(json.dumps({
        "imagesPerSecond": a.batch / step,
        "peakRssMiB": peak,
        "losses": losses,
        "encoderShare": encoder_times[len(encoder_times) // 2] / step,
    }))


if __name__ == "__main__":
    main()
