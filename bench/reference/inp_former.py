"""A plain-PyTorch INP-Former for side-by-side benchmarks (issue 9): the network of upstream's
models/uad.py (INP_Former) around facebookresearch/dinov2's ViT, written from the recipe in
test/fixtures/reference-a/README.md, with upstream's state-dict names so its files load
strictly. `python3 bench/reference/inp_former.py` checks it against reference-a before it is
used for timing.
"""
import math
import sys

import torch
import torch.nn.functional as F
from torch import nn


class Mlp(nn.Module):
    def __init__(self, dim, hidden, bias=True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoViT(nn.Module):
    def __init__(self, dim, depth, heads, registers, patch=14, grid=37, hidden=None, eps=1e-6, offset=0.1):
        super().__init__()
        self.patch, self.offset, self.registers = patch, offset, registers
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, registers, dim)) if registers else None
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.patch_embed = PatchEmbed(dim, patch)
        self.blocks = nn.ModuleList(Block(dim, heads, hidden or 4 * dim, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=eps)

    def interpolate_pos_encoding(self, h, w):
        pos = self.pos_embed.float()
        n = pos.shape[1] - 1
        M = int(math.sqrt(n))
        h0, w0 = h // self.patch, w // self.patch
        if h0 == M and w0 == M:
            return pos
        # dinov2: scale factors with the 0.1 offset, bicubic, no antialias
        patch_pos = F.interpolate(
            pos[:, 1:].reshape(1, M, M, -1).permute(0, 3, 1, 2),
            scale_factor=((w0 + self.offset) / M, (h0 + self.offset) / M),
            mode="bicubic", antialias=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).view(1, -1, pos.shape[-1])
        return torch.cat((pos[:, :1], patch_pos), dim=1)

    def prepare_tokens(self, x):
        B, _, h, w = x.shape
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(h, w)
        if self.registers:
            x = torch.cat((x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]), dim=1)
        return x


class CrossAttention(nn.Module):
    """q from `x`, k and v from `y`: softmax (the INP extractor) or, with `relu`, the INP-guided
    decoder's attention (normalised q and k, learnable per-head scale, ReLU)."""

    def __init__(self, dim, heads, relu):
        super().__init__()
        self.heads, self.relu = heads, relu
        self.scale = (dim // heads) ** -0.5
        if relu:
            self.learn_scale = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, y):
        B, N, C = x.shape
        M = y.shape[1]
        H = self.heads
        q = self.q(x).reshape(B, N, H, C // H).permute(0, 2, 1, 3)
        kv = self.kv(y).reshape(B, M, 2, H, C // H).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        if self.relu:
            attn = F.relu((F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * self.learn_scale)
        else:
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class InpBlock(nn.Module):
    """The extractor block (residual attention) or, with `decoder`, the INP-guided decoder block
    (no first residual)."""

    def __init__(self, dim, heads, decoder, eps=1e-8, bias=True):
        super().__init__()
        self.decoder = decoder
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = CrossAttention(dim, heads, relu=decoder)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, 4 * dim, bias=bias)

    def forward(self, x, y):
        a = self.attn(self.norm1(x), self.norm1(y))
        x = a if self.decoder else x + a
        return x + self.mlp(self.norm2(x))


class InpFormer(nn.Module):
    def __init__(self, encoder, target_layers, fuse_encoder, fuse_decoder, inp_num=6, heads=None, decoder_depth=8):
        super().__init__()
        dim = encoder.pos_embed.shape[-1]
        heads = heads or encoder.blocks[0].attn.heads
        self.target_layers, self.fuse_encoder, self.fuse_decoder = target_layers, fuse_encoder, fuse_decoder
        self.prototype_token = nn.Parameter(torch.zeros(inp_num, dim))
        self.encoder = encoder
        self.bottleneck = nn.ModuleList([Mlp(dim, 4 * dim)])
        self.aggregation = nn.ModuleList([InpBlock(dim, heads, decoder=False)])
        self.decoder = nn.ModuleList(InpBlock(dim, heads, decoder=True) for _ in range(decoder_depth))

    def forward(self, images):
        skip = 1 + self.encoder.registers
        with torch.no_grad():
            x = self.encoder.prepare_tokens(images)
            en = []
            for i, blk in enumerate(self.encoder.blocks[: max(self.target_layers) + 1]):
                x = blk(x)
                if i in self.target_layers:
                    en.append(x[:, skip:])
        side = int(math.sqrt(en[0].shape[1]))
        x = torch.stack(en, 1).mean(1)
        B = x.shape[0]
        prototypes = self.prototype_token
        for blk in self.aggregation:
            prototypes = blk(prototypes.unsqueeze(0).repeat(B, 1, 1), x)
        g_loss = (1 - F.cosine_similarity(x.unsqueeze(2), prototypes.unsqueeze(1), dim=-1)).min(2)[0].mean()
        for blk in self.bottleneck:
            x = blk(x)
        de = []
        for blk in self.decoder:
            x = blk(x, prototypes)
            de.append(x)
        de = de[::-1]
        as_map = lambda t: t.permute(0, 2, 1).reshape(B, -1, side, side).contiguous()
        en_groups = [as_map(torch.stack([en[i] for i in g], 1).mean(1)) for g in self.fuse_encoder]
        de_groups = [as_map(torch.stack([de[i] for i in g], 1).mean(1)) for g in self.fuse_decoder]
        return en_groups, de_groups, g_loss


def anomaly_map(en, de, size, blur_sigma=4.0, blur_size=5):
    """1 - cos per group, bilinear (align_corners=True) to `size`, mean over groups, anomalib's
    Gaussian blur (reflect padding); the score is the mean of the top 1%."""
    maps = [F.interpolate(1 - F.cosine_similarity(e, d, dim=1).unsqueeze(1), size=size, mode="bilinear", align_corners=True)
            for e, d in zip(en, de)]
    raw = torch.stack(maps, 1).mean(1)
    r = torch.arange(blur_size, dtype=torch.float32) - (blur_size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * blur_sigma ** 2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :])[None, None]
    pad = blur_size // 2
    blurred = F.conv2d(F.pad(raw, (pad, pad, pad, pad), mode="reflect"), kernel)
    flat = blurred.flatten(1)
    k = max(1, int(flat.shape[1] * 0.01))
    score = flat.topk(k, dim=1)[0].mean(1)
    return raw, blurred, score


def reference_a_model(fixture):
    enc = DinoViT(96, 10, 4, 4)
    model = InpFormer(enc, [2, 3, 4, 5, 6, 7, 8, 9], [[0, 1, 2, 3], [4, 5, 6, 7]], [[0, 1, 2, 3], [4, 5, 6, 7]])
    model.load_state_dict(torch.load(f"{fixture}/inp_former.pth", map_location="cpu"), strict=True)
    return model.eval()


def check(fixture):
    """Largest differences against reference-a's outputs (upstream model, 3 images of 224 px)."""
    import json
    import numpy as np
    manifest = json.load(open(f"{fixture}/manifest.json"))
    ref = lambda n: torch.from_numpy(np.fromfile(f"{fixture}/tensors/{n}.f32", dtype="<f4").reshape(manifest["tensors"][n]["shape"]))
    model = reference_a_model(fixture)
    with torch.no_grad():
        en, de, g_loss = model(ref("input"))
        raw, blurred, score = anomaly_map(en, de, (224, 224))
    out = {
        "en_0": (en[0] - ref("en_0")).abs().max().item(),
        "en_1": (en[1] - ref("en_1")).abs().max().item(),
        "de_0": (de[0] - ref("de_0")).abs().max().item(),
        "de_1": (de[1] - ref("de_1")).abs().max().item(),
        "g_loss": abs(g_loss.item() - ref("g_loss").item()),
        "anomaly_map_raw": (raw - ref("anomaly_map_raw")).abs().max().item(),
        "anomaly_map": (blurred - ref("anomaly_map")).abs().max().item(),
        "pred_score": (score - ref("pred_score")).abs().max().item(),
    }
    return out


if __name__ == "__main__":
    fixture = sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/reference-a"
    diffs = check(fixture)
    for k, v in diffs.items():
        print(f"{k:16s} max abs difference {v:.3e}")
    sys.exit(0 if max(diffs.values()) < 1e-4 else 1)
