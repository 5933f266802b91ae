"""native/int8.c's kernels on whatever instruction set this build has (AVX-512 VNNI; AVX2 with 256-bit VNNI,
``OPENQNN_MAX_ISA=avxvnni``; AVX2 with ``OPENQNN_MAX_ISA=avx2`` / on a CPU without VNNI) against numpy's int64 sums, on shapes around their
blocks and tiles and on extreme codes; and whole models bit-identical across the ISA caps."""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from openqnn.backends.htp import native

ROOT = Path(__file__).resolve().parents[3]
X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.fixture(autouse=True)
def requant_impl() -> str:
    """(Overrides the directory's native/PyTorch parametrization: these tests run the C kernels.)"""
    return "native"


@pytest.fixture
def int8_lib():
    lib = native.library()
    if lib is None or not native.int8_available():
        pytest.skip("int8.c's kernels are not built here (no C compiler, or neither AVX-512 VNNI nor AVX2)")
    return lib


@pytest.fixture(params=[1, 3], ids=["1thread", "3threads"])
def threads(int8_lib, request):
    """1 or 3 threads, every product split among them however small: the bits must not depend on it."""
    macs = ctypes.c_double.in_dll(int8_lib, "openqnn_parallel_macs")
    saved = macs.value
    macs.value = 0.0
    native.sync_threads(request.param)
    yield request.param
    macs.value = saved
    native.sync_threads(1)


def _gemm(lib, a: np.ndarray, w: np.ndarray, init: np.ndarray) -> np.ndarray:
    """init + a @ w through Int8Gemm (the identity requantization: exact for |acc| < 2^29)."""
    n = w.shape[1]
    gemm = native.Int8Gemm(lib, torch.from_numpy(w.astype(np.int8)), torch.from_numpy(init.astype(np.int32)),
                           native._identity_rq(lib, n))
    got = gemm.run(torch.from_numpy(a.astype(np.uint8)), torch.empty((a.shape[0], n), dtype=torch.int32))
    return got.numpy().astype(np.int64) - native.IDENTITY_OFFSET


# M around the tiles (4 or 6 rows) and blocks of rows (48 to 64), K around pairs, quads and the AVX2 kernel's
# chunks of 512, N around blocks of 8 / 16 and panels of 16 / 64 columns
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (2, 2, 7), (3, 3, 9), (4, 5, 15), (5, 15, 17), (7, 17, 23),
                                   (9, 33, 33), (49, 511, 40), (65, 513, 24), (130, 64, 65), (13, 1025, 8),
                                   (3, 1537, 130)])
def test_gemm_odd_shapes_and_extreme_codes(int8_lib, threads: int, m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(m * 10007 + k * 101 + n)
    a = rng.integers(0, 256, (m, k))
    w = rng.integers(-128, 128, (k, n))
    a[0] = 255  # every product of row 0 and column 0 at its extreme (a pair of them overflows int16)
    w[:, 0] = -128
    if n > 1:
        w[:, 1] = 127
    if m > 1:
        a[1] = 0
    init = rng.integers(-(1 << 20), 1 << 20, n)
    np.testing.assert_array_equal(_gemm(int8_lib, a, w, init), a @ w + init)


@pytest.mark.parametrize("sign", [-128, 127])
def test_gemm_large_reduction_near_the_int32_bound(int8_lib, sign: int) -> None:
    """16000 products of 255 x -128 (or 127): sums of about 2^29, far beyond int16 and float32's 2^24,
    accumulated exactly (the identity requantization reads up to 2^29)."""
    k = 16000
    a = np.full((5, k), 255)
    a[3, ::2] = 0
    w = np.full((k, 9), sign)
    w[::3, 4] = -sign - (sign < 0)
    np.testing.assert_array_equal(_gemm(int8_lib, a, w, np.zeros(9, np.int64)), a @ w)


def _depthwise_np(x: np.ndarray, w: np.ndarray, geo: tuple[int, ...]) -> np.ndarray:
    n, h, wd, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, zx = geo
    xp = np.full((n, h + 2 * (kh * dh + pt), wd + 2 * (kw * dw + pl), c), zx, np.int64)
    xp[:, pt:pt + h, pl:pl + wd] = x
    acc = np.zeros((n, oh, ow, c), np.int64)
    for i in range(kh):
        for j in range(kw):
            acc += xp[:, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw] * w[i, j]
    return acc


@pytest.mark.parametrize("c", [1, 3, 7, 9, 17, 33, 100])
@pytest.mark.parametrize("kernel", [(1, 1), (3, 3), (5, 5), (2, 7)])
def test_depthwise_odd_channels_and_kernels(int8_lib, threads: int, c: int, kernel: tuple[int, int]) -> None:
    kh, kw = kernel
    rng = np.random.default_rng(c * 31 + kh * 7 + kw)
    sh, sw, dh, dw = (int(v) for v in rng.integers(1, 3, 4))
    pt, pb, pl, pr = (int(v) for v in rng.integers(0, 3, 4))
    n, h, wd = 2, dh * (kh - 1) + 1 + int(rng.integers(0, 9)), dw * (kw - 1) + 1 + int(rng.integers(0, 11))
    oh, ow = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    zx = int(rng.integers(0, 256))
    x = rng.integers(0, 256, (n, h, wd, c))
    x[0, 0] = 255
    w = rng.integers(-128, 128, (kh, kw, c))
    w[..., 0] = -128
    init = rng.integers(-1000, 1000, c)
    geo = (n, h, wd, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, zx)
    dwk = native.Int8Depthwise(int8_lib, torch.from_numpy(w.astype(np.int8)), torch.from_numpy(init.astype(np.int32)),
                               native._identity_rq(int8_lib, c), geo)
    got = dwk.run(torch.from_numpy(x.astype(np.uint8)), torch.empty((n, oh, ow, c), dtype=torch.int32))
    np.testing.assert_array_equal(got.numpy().astype(np.int64) - native.IDENTITY_OFFSET,
                                  _depthwise_np(x, w, geo) + init)


# the AVX2 section's packings (int8.c), by build: (the k per group, the weights' dtype); columns padded to 8, panels
# of up to 2 blocks of 8; per group of k, a block's 8 columns as (w[k], .., w[k + group - 1]) each; zeros past K, N
_AVX2_PACKINGS = {"avx2": (2, np.int16),  # vpmaddwd's pairs of int16
                  "avx-vnni": (4, np.int8)}  # vpdpbusd's groups of 4 bytes (OPENQNN_MAX_ISA=avxvnni)


@pytest.mark.parametrize("k,n", [(1, 1), (3, 5), (4, 16), (17, 23), (130, 129)])
def test_avx2_section_gemm_pack_layout(int8_lib, k: int, n: int) -> None:
    """The AVX2 section's weight packing, as its build (vpmaddwd, or 256-bit VNNI) lays it out."""
    isa = native.int8_isa()
    if isa not in _AVX2_PACKINGS:
        pytest.skip(f"the kernels here are built for {isa} (that packing has its own test)")
    group, dtype = _AVX2_PACKINGS[isa]
    w = np.random.default_rng(k * 7 + n).integers(-128, 128, (k, n)).astype(np.int8)
    size = int8_lib.gemm_pack_size(ctypes.c_long(k), ctypes.c_long(n))
    out = np.zeros(size, np.int8)
    int8_lib.gemm_pack(ctypes.c_void_p(w.ctypes.data), ctypes.c_long(k), ctypes.c_long(n),
                       ctypes.c_void_p(out.ctypes.data))
    kq, blocks = -(-k // group), (n + 7) // 8
    padded = np.zeros((group * kq, 8 * blocks), dtype)
    padded[:k, :n] = w
    want = [padded[group * q:group * q + group, 8 * b:8 * b + 8].T.reshape(-1)
            for p0 in range(0, blocks, 2) for q in range(kq) for b in range(p0, min(p0 + 2, blocks))]
    np.testing.assert_array_equal(out.view(dtype), np.concatenate(want))


# -- whole models across the ISA caps -----------------------------------------------------------------

_MODEL = """
import sys, numpy as np, openqnn
sys.path.insert(0, 'tests')
from onnx import TensorProto, helper, numpy_helper
from helpers import make_model
rng = np.random.default_rng(0)
def init(name, *shape):
    return numpy_helper.from_array((0.3 * rng.standard_normal(shape)).astype(np.float32), name)
inits = [init('w0', 16, 3, 7, 7), init('w1', 16, 1, 3, 3), init('w2', 24, 16, 1, 1), init('w3', 20, 24, 3, 3),
         init('w4', 20, 20, 2, 3), init('fc', 10, 20)]
nodes = [helper.make_node('Conv', ['x', 'w0'], ['c0'], pads=[3, 3, 3, 3], strides=[2, 2]),
         helper.make_node('Relu', ['c0'], ['r0']),
         helper.make_node('Conv', ['r0', 'w1'], ['c1'], pads=[1, 1, 1, 1], group=16),
         helper.make_node('Conv', ['c1', 'w2'], ['c2']), helper.make_node('Relu', ['c2'], ['r2']),
         helper.make_node('Conv', ['r2', 'w3'], ['c3'], pads=[1, 0, 1, 2], strides=[1, 2]),
         helper.make_node('Relu', ['c3'], ['r3']),
         helper.make_node('Conv', ['r3', 'w4'], ['c4'], dilations=[2, 1]),
         helper.make_node('GlobalAveragePool', ['c4'], ['g']), helper.make_node('Flatten', ['g'], ['f']),
         helper.make_node('Gemm', ['f', 'fc'], ['y'], transB=1)]
g = openqnn.convert(make_model(nodes, [('x', TensorProto.FLOAT, [1, 3, 21, 19])], [('y', TensorProto.FLOAT, [1, 10])],
                               inits))
cal = [{'x': rng.random((1, 3, 21, 19), dtype=np.float32)} for _ in range(4)]
q = openqnn.quantize(g, cal, openqnn.QuantizerConfig(use_per_channel_quantization=True))
"""

_RUN = _MODEL + """
from benchmarks.machine import htp_paths
from openqnn.backends.htp import HtpBackend, native
prepared = HtpBackend().prepare(q)
outs = [openqnn.Session(q, backend='htp').run(f, native_outputs=True)['y'] for f in cal]
if len(sys.argv) > 1:
    openqnn.compile(q, 'htp').save(sys.argv[1])
print(native.int8_isa())
print(htp_paths(prepared).replace(' ', ''))
print(np.concatenate([o.reshape(-1) for o in outs]).tobytes().hex())
"""

_OPEN = """
import sys, numpy as np, openqnn
rng = np.random.default_rng(0)
s = openqnn.Session(sys.argv[1])
print(np.concatenate([s.run({'x': np.load(p)}, native_outputs=True)['y'].reshape(-1) for p in sys.argv[2:]]).tobytes().hex())
"""


def _env(isa: str, cache: Path) -> dict[str, str]:
    env = dict(os.environ, OPENQNN_MAX_ISA=isa, OPENQNN_CACHE_DIR=str(cache))
    if isa != "native":  # oneDNN and PyTorch capped as well, as on a CPU without AVX-512
        env.update(ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _python(code: str, isa: str, cache: Path, *args: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", code, *args], env=_env(isa, cache), capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.split()


def test_a_model_gives_the_same_bits_on_every_isa(tmp_path: Path) -> None:
    """7x7 (three input channels), depthwise, 1x1, padded strided 3x3 and dilated 2x3 convolutions and a fully
    connected layer: the same output bits with everything this CPU has, with AVX2 only and with no SIMD; with
    AVX2 only, the native kernels run every convolution (k x k ones as an im2col times the GEMM)."""
    runs = {isa: _python(_RUN, isa, tmp_path / isa) for isa in ("native", "avxvnni", "avx2", "baseline")}
    assert runs["avx2"][2] == runs["native"][2] == runs["baseline"][2] == runs["avxvnni"][2]
    assert runs["baseline"][0] == "None" and "fused" not in runs["baseline"][1]
    if X86 and runs["avx2"][0] == "avx2":
        assert runs["avx2"][1] == "conv2d:fusedx2,conv2d:im2col_nativex3,fully_connected:fusedx1"
    if runs["avxvnni"][0] == "avx-vnni":  # (a CPU with AVX-VNNI, or AVX-512 VNNI's EVEX form of it)
        assert runs["avxvnni"][1] == runs["avx2"][1]


def test_a_context_prepared_with_avx2_opens_bit_identically_elsewhere(tmp_path: Path) -> None:
    """A context prepared where the kernels are AVX2 ones (its kinds: im2col_native) opens with everything this
    CPU has and with no SIMD at all: the binders take the kinds each machine has, the same bits."""
    ctx = tmp_path / "avx2.bin"
    prepared = _python(_RUN, "avx2", tmp_path / "avx2", str(ctx))
    inputs = _python(_MODEL + """
for i, f in enumerate(cal):
    np.save(sys.argv[1] + f'/x{i}.npy', f['x'])
print('ok')
""", "native", tmp_path / "native", str(tmp_path))
    assert inputs == ["ok"]
    feeds = [str(tmp_path / f"x{i}.npy") for i in range(4)]
    for isa in ("native", "baseline"):
        assert _python(_OPEN, isa, tmp_path / isa, str(ctx), *feeds) == [prepared[2]], isa
