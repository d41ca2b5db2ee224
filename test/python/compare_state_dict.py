"""Open a file with Python's torch.load and compare it with a reference state dict:
the keys (in order), shapes, dtypes and values. Prints one JSON line."""
import json
import sys

import torch

saved_path, reference_path = sys.argv[1], sys.argv[2]
saved = torch.load(saved_path)
reference = torch.load(reference_path)
report = {
    "type": type(saved).__name__,
    "same_keys": list(saved.keys()) == list(reference.keys()),
    "missing": [k for k in reference if k not in saved],
    "unexpected": [k for k in saved if k not in reference],
    "shape_or_dtype_mismatch": [
        k for k in reference if k in saved and (saved[k].shape != reference[k].shape or saved[k].dtype != reference[k].dtype)
    ],
    "max_abs_diff": max(
        ((saved[k].double() - reference[k].double()).abs().max().item() for k in reference if k in saved), default=0.0
    ),
    "metadata": {k: v for k, v in getattr(saved, "_metadata", {}).items() if k == "inp_former"},
}
# A module whose parameters are exactly the reference's accepts the file with strict=True.
module = torch.nn.Module()
for name, value in reference.items():
    parent = module
    *path, leaf = name.split(".")
    for part in path:
        if not hasattr(parent, part):
            parent.add_module(part, torch.nn.Module())
        parent = getattr(parent, part)
    parent.register_parameter(leaf, torch.nn.Parameter(torch.zeros_like(value)))
result = module.load_state_dict(saved, strict=True)
report["strict_load"] = not result.missing_keys and not result.unexpected_keys
print(json.dumps(report))
