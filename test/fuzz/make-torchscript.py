# Writes test/fuzz/tiny.torchscript.pt, the seed archive the fuzz suite mutates for its
# TorchScript cases: a scripted module with parameters, a buffer and a nested submodule.
# Run: /usr/bin/python3 test/fuzz/make-torchscript.py   (any torch >= 1.13; the file is committed)
import os
import torch


class Inner(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 2)
        self.register_buffer("scale", torch.arange(4, dtype=torch.float32).reshape(2, 2) / 8)

    def forward(self, x):
        return self.proj(x) * self.scale[0]


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Inner()
        self.norm = torch.nn.LayerNorm(2)
        self.token = torch.nn.Parameter(torch.linspace(-1, 1, 6).reshape(1, 6))

    def forward(self, x):
        return self.norm(self.inner(x)) + self.token[0, :2]


torch.manual_seed(0)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny.torchscript.pt")
torch.jit.save(torch.jit.script(Tiny().eval()), out)
print(out, os.path.getsize(out), "bytes")
