# How much oneDNN's products would gain from weights packed once instead of on every call.
# dnnl_sgemm (what cpp/core/cpu_gemm.cpp calls) packs its operands inside each call; oneDNN also
# exports a packed API (dnnl::impl::cpu::sgemm_pack_get_size / sgemm_pack / sgemm_compute,
# C++ symbols present in both oneDNN 2.6 and 3.7 as Debian ships them), which packs the weight
# once. This times both on the encoder's linear layers (y = x W^T, x [M, K], W [N, K]) with the
# threads libgomp is given, checks that the results are bit-identical, and reports the packed
# weight's size against the plain one. The package packs this way since 85494ad
# (cpp/core/packed_weights.cpp, which drops the plain weight and rebuilds it exactly when needed).
# Two things found there that this script does not exercise: a pack is laid out for the threads
# present when it is made, and oneDNN's driver, which takes that partition as given, sizes its
# per-thread state by the threads present at the call, so computing with fewer threads gave wrong
# results or hung (the package computes on the pack's own count); and sgemm_pack_get_size crashed
# when told of 6 rows (the package sizes packs for 8192, which also avoids a third of padding on
# some shapes).
#   OMP_NUM_THREADS=2 /usr/bin/python3 bench/onednn-packed.py [path/to/libdnnl.so]
import ctypes
import sys
import time

import numpy as np

lib = ctypes.CDLL(sys.argv[1] if len(sys.argv) > 1 else 'libdnnl.so.2')
dim = ctypes.c_long
get_size = getattr(lib, '_ZN4dnnl4impl3cpu19sgemm_pack_get_sizeEPKcS3_S3_PKlS5_S5_S5_S5_PmPb')
pack = getattr(lib, '_ZN4dnnl4impl3cpu10sgemm_packEPKcS3_S3_PKlS5_S5_S5_S5_PKfPf')
compute = getattr(lib, '_ZN4dnnl4impl3cpu13sgemm_computeEPKcS3_PKlS5_S5_PKfS5_S7_S5_S7_PfS5_')
sgemm = lib.dnnl_sgemm
sgemm.argtypes = [ctypes.c_char, ctypes.c_char, dim, dim, dim, ctypes.c_float, ctypes.c_void_p, dim,
                  ctypes.c_void_p, dim, ctypes.c_float, ctypes.c_void_p, dim]


def ref(v):
    return ctypes.byref(dim(v))


def ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def median_seconds(fn, reps=15):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


# (label, tokens M, in K, out N): qkv, proj, fc1, fc2 of ViT-S (384) and ViT-B (768)
SHAPES = []
for width, label in ((384, 'S'), (768, 'B')):
    for tokens, where in ((261, '224 b1'), (8 * 261, '224 b8'), (789, '392 b1')):
        for layer, k, n in (('qkv', width, 3 * width), ('proj', width, width), ('fc1', width, 4 * width), ('fc2', 4 * width, width)):
            SHAPES.append((f'ViT-{label} {where} {layer}', tokens, k, n))

rng = np.random.default_rng(0)
print('| product | M x K x N | dnnl_sgemm GFLOP/s | packed GFLOP/s | packed / plain | bit-identical | packed size / weight |')
print('|---|---|---|---|---|---|---|')
totals = {}
for label, m, k, n in SHAPES:
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    plain_out = np.zeros((m, n), np.float32)
    packed_out = np.zeros((m, n), np.float32)
    # column-major view: C^T [n, m] = W [n, k] (W^T stored k x n, transposed) x X^T [k, m]
    size, needed = ctypes.c_size_t(0), ctypes.c_bool(False)
    assert get_size(b'A', b'T', b'N', ref(n), ref(m), ref(k), ref(k), ref(k), ctypes.byref(size), ctypes.byref(needed)) == 0
    packed = np.zeros(size.value // 4 + 16, np.float32)
    assert pack(b'A', b'T', b'N', ref(n), ref(m), ref(k), ref(k), ref(k), ptr(w), ptr(packed)) == 0
    beta = ctypes.c_float(0.0)

    def run_plain():
        sgemm(b'N', b'T', m, n, k, 1.0, ptr(x), k, ptr(w), k, 0.0, ptr(plain_out), n)

    def run_packed():
        compute(b'P', b'N', ref(n), ref(m), ref(k), ptr(packed), ref(k), ptr(x), ref(k), ctypes.byref(beta), ptr(packed_out), ref(n))

    run_plain()
    run_packed()
    t_plain = min(median_seconds(run_plain), median_seconds(run_plain))
    t_packed = min(median_seconds(run_packed), median_seconds(run_packed))
    group = label.rsplit(' ', 1)[0]
    a, b = totals.get(group, (0.0, 0.0))
    totals[group] = (a + t_plain, b + t_packed)
    flop = 2.0 * m * n * k / 1e9
    print(f'| {label} | {m} x {k} x {n} | {flop / t_plain:.0f} | {flop / t_packed:.0f} | {t_plain / t_packed:.2f}x | '
          f'{"yes" if np.array_equal(plain_out, packed_out) else "no"} | {size.value / (n * k * 4):.2f}x |')
print()
for group, (a, b) in totals.items():
    print(f'{group}: one block\'s four products {a * 1e3:.2f} ms plain, {b * 1e3:.2f} ms packed ({a / b:.2f}x)')
