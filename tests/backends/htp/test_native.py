"""The native (C) helpers of the htp fast path against their PyTorch forms, bit for bit."""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import numpy as np
import pytest
import torch

from openqnn.backends.htp import native
from openqnn.backends.htp.executable import quantize_t
from openqnn.backends.htp.kernels import requant as requant_mod
from openqnn.backends.htp.kernels.registry import QParams
from openqnn.ir.tensor import Encoding


@pytest.fixture(autouse=True)
def requant_impl() -> str:
    """(Overrides the directory's native/PyTorch parametrization: these tests compare the two.)"""
    return "native"


@pytest.fixture
def lib():
    lib = native.library()
    if lib is None:
        pytest.skip("no C compiler: the native helpers are not built here")
    return lib


@pytest.mark.parametrize("bw", [8, 16])
def test_quantize_matches_float64_rounding(lib, bw: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ties (x exactly halfway between codes) round to even; out-of-range values saturate."""
    rng = np.random.default_rng(5 + bw)
    for _ in range(20):
        scale = float(np.exp(rng.uniform(-8, 2)))
        offset = -int(rng.integers(0, 1 << bw))
        q = QParams.of(Encoding(bw, (scale,), (offset,)))
        codes = rng.integers(-300, (1 << bw) + 300, size=2000)
        x = np.concatenate([(codes + offset + 0.5) * scale, (codes + offset) * scale,
                            rng.normal(scale=scale * (1 << bw), size=2000)]).astype(np.float32)
        t = torch.from_numpy(x)
        got = quantize_t(t, q)
        monkeypatch.setattr(native, "library", lambda: None)
        want = quantize_t(t, q)
        monkeypatch.undo()
        assert got.dtype == want.dtype and torch.equal(got, want)


def test_lookup_one_and_two_operands(lib) -> None:
    rng = np.random.default_rng(3)
    table = torch.from_numpy(rng.integers(0, 256, size=65536).astype(np.uint8))
    x = torch.from_numpy(rng.integers(0, 256, size=(3, 5, 7)).astype(np.uint8))
    y = torch.from_numpy(rng.integers(0, 256, size=(3, 5, 7)).astype(np.uint8))
    assert torch.equal(native.lookup(table, x, y), table[x.long() * 256 + y.long()])
    small = table[:256].contiguous()
    assert torch.equal(native.lookup(small, x), small[x.long()])
    assert not native.lookup_ok(table, x, y[:2])  # shapes differ: PyTorch's broadcasting path


def test_requant_rows_of_few_channels_in_groups(lib) -> None:
    """Rows of few channels go k at a time through the vectorized loop, the rest one by one."""
    for ch in (1, 3, 16, 24, 96, 1000):
        rng = np.random.default_rng(ch)
        cst = torch.from_numpy(rng.uniform(-3, 300, size=ch))
        mul = torch.from_numpy(rng.uniform(1e-4, 1e-2, size=ch))
        madd = torch.from_numpy(rng.integers(-5, 5, size=ch).astype(np.int32))
        nr = native.NativeRequant(lib, torch.int32, torch.uint8, 255, cst, mul, madd, False, None, None)
        for rows in (1, 7, 64, 333):
            x = torch.from_numpy(rng.integers(-50000, 50000, size=(rows, ch)).astype(np.int32))
            want = ((cst + x.double() * mul).floor().clamp(-2.0**30, 2.0**30).int() + madd).clamp(0, 255)
            assert torch.equal(nr.run(x), want.to(torch.uint8)), (ch, rows)


# -- int8.c: the fused int8 kernels ---------------------------------------------------------------

@pytest.fixture
def int8_lib(lib):
    if not native.int8_available():
        pytest.skip("this CPU has neither AVX-512 VNNI nor AVX2: the fused int8 kernels are not built")
    return lib


@pytest.fixture
def vnni_lib(int8_lib):
    if native.int8_isa() != "avx512-vnni":
        pytest.skip("the kernels here are built for AVX2: no in-register requantization (that needs AVX-512)")
    return int8_lib


@pytest.mark.parametrize("k,n", [(1, 1), (3, 5), (4, 16), (8, 64), (100, 37), (130, 129), (384, 1536)])
def test_gemm_pack_layout(int8_lib, k: int, n: int) -> None:
    """gemm_pack writes int8.c's documented layout (AVX-512 VNNI): panels of up to 4 blocks of 16 columns, per
    4 k rows a block's 16 columns as 4 consecutive k bytes each, zeros past K and N."""
    if native.int8_isa() != "avx512-vnni":
        pytest.skip(f"the kernels here are built for {native.int8_isa()}: another packing (tests/backends/htp/"
                    "test_int8_native_paths.py checks it)")

    w = torch.randint(-128, 128, (k, n), dtype=torch.int8, generator=torch.Generator().manual_seed(k * 7 + n))
    out = torch.empty(int8_lib.gemm_pack_size(ctypes.c_long(k), ctypes.c_long(n)), dtype=torch.int8)
    int8_lib.gemm_pack(ctypes.c_void_p(w.data_ptr()), ctypes.c_long(k), ctypes.c_long(n), ctypes.c_void_p(out.data_ptr()))
    kq, blocks = (k + 3) // 4, (n + 15) // 16
    padded = np.zeros((4 * kq, 16 * blocks), np.int8)
    padded[:k, :n] = w.numpy()
    want = [padded[4 * q:4 * q + 4, 16 * b:16 * b + 16].T.reshape(-1)
            for p0 in range(0, blocks, 4) for q in range(kq) for b in range(p0, min(p0 + 4, blocks))]
    np.testing.assert_array_equal(out.numpy(), np.concatenate(want))


@pytest.fixture(params=[1, 3], ids=["1thread", "3threads"])
def pool(int8_lib, request):
    """The C kernels on 1 or 3 threads (more than this machine may have), every product split among
    them however small: the bits must not depend on it."""
    macs = ctypes.c_double.in_dll(int8_lib, "openqnn_parallel_macs")
    saved = macs.value
    macs.value = 0.0
    native.sync_threads(request.param)
    yield request.param
    macs.value = saved
    native.sync_threads(1)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (5, 3, 16), (6, 4, 17), (7, 37, 64), (13, 64, 70), (50, 130, 129),
                                   (200, 16, 96), (3, 1000, 200)])
def test_int8_gemm_exact(int8_lib, pool: int, m: int, k: int, n: int) -> None:
    """Accumulators of uint8 x int8 GEMMs (extreme codes included) equal int64 sums exactly."""
    g = torch.Generator().manual_seed(m * 1000 + k * 10 + n)
    a = torch.randint(0, 256, (m, k), dtype=torch.int64, generator=g)
    a[0] = 255
    w = torch.randint(-128, 128, (k, n), dtype=torch.int64, generator=g)
    w[:, 0] = -128
    init = torch.randint(-5000, 5000, (n,), dtype=torch.int32, generator=g)
    want = a @ w + init.to(torch.int64)
    gemm = native.Int8Gemm(int8_lib, w.to(torch.int8), init, native._identity_rq(int8_lib, n))
    got = gemm.run(a.to(torch.uint8)).to(torch.int64) - native.IDENTITY_OFFSET
    assert torch.equal(got, want)


def _estimate_requant(lib, rng: np.random.Generator, n: int, bound: int, dyn: bool, folded: bool
                      ) -> tuple[list[native.NativeRequant], Callable[[torch.Tensor], torch.Tensor]]:
    """Float32-estimate requantizations of accumulators |acc| < bound on n channels (y about
    [-300, 300]): one with the estimate's bound and one under which every group takes the float64
    fallback; and the exact integer reference of both."""
    s = 31 + 6
    top = max(1, int(300 / bound * 2.0**s))
    mul = torch.tensor([float(v) * 2.0**-s for v in rng.integers(max(1, top // 2), top + 1, size=n)],
                       dtype=torch.float64)
    cst = torch.tensor(rng.integers(-(1 << 44), 1 << 44, size=n) * 2.0**-s, dtype=torch.float64)
    madd = torch.tensor(rng.integers(-3, 130, size=n), dtype=torch.int32)
    nd = torch.full((n,), -2.0**-6, dtype=torch.float64) if dyn else torch.zeros(n, dtype=torch.float64)
    xthr = torch.from_numpy(rng.integers(-bound // 2, bound // 2 + 1, size=n)).to(torch.int32)
    dyn_t = (torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64), nd) if dyn else None
    ybound = float(bound * mul.max() + cst.abs().max()) + 1
    eps = requant_mod._estimate_error(cst, mul, nd, [bound] * n, ybound)
    assert eps is not None
    forms = [native.NativeRequant(lib, torch.int32, torch.uint8, 255, cst, mul, madd, folded, dyn_t, None, xthr, e)
             for e in (eps, 0.75)]
    assert all(f.mode == 1 | 2 * dyn | 4 * folded for f in forms)

    def reference(acc: torch.Tensor) -> torch.Tensor:
        flat = _reference_rows(acc.reshape(-1, n).to(torch.int32), cst, mul, nd, xthr, madd, folded, dyn)
        return flat.reshape(acc.shape)

    return forms, reference


@pytest.mark.parametrize("dyn", [False, True])
@pytest.mark.parametrize("folded", [False, True])
@pytest.mark.parametrize("m,k,n", [(1, 3, 5), (7, 37, 64), (13, 64, 70), (50, 130, 129), (200, 16, 96)])
def test_int8_gemm_requantized_in_registers(vnni_lib, pool: int, dyn: bool, folded: bool, m: int, k: int, n: int) -> None:
    """With the float32 estimate's plan, the GEMM requantizes its accumulators in registers (no
    epilogue pass): the outputs equal exact integer arithmetic on the int64 sums."""
    rng = np.random.default_rng(m * 1000 + k * 10 + n + 7 * dyn + 3 * folded)
    a = torch.from_numpy(rng.integers(0, 256, size=(m, k)))
    a[0] = 255
    w = torch.from_numpy(rng.integers(-128, 128, size=(k, n)))
    init = torch.from_numpy(rng.integers(-5000, 5000, size=n)).to(torch.int32)
    acc = a @ w + init.to(torch.int64)
    forms, reference = _estimate_requant(vnni_lib, rng, n, int(acc.abs().max()) + 1, dyn, folded)
    for rq in forms:
        gemm = native.Int8Gemm(vnni_lib, w.to(torch.int8), init, rq)
        assert torch.equal(gemm.run(a.to(torch.uint8)), reference(acc))


def _depthwise_case(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, ...], torch.Tensor]:
    """A random depthwise convolution: codes x [n, h, w, c], weights [kh, kw, c], init [c], the
    geometry tuple of Int8Depthwise and the exact accumulators (padding taps read the zero point)."""
    rng = np.random.default_rng(seed)
    kh, kw = (3, 3) if seed % 3 == 0 else (int(rng.integers(1, 6)), int(rng.integers(1, 9)))
    sh, sw, dh, dw = (int(v) for v in rng.integers(1, 3, size=4))
    c = int(rng.choice([1, 15, 16, 17, 64, 100]))
    n = int(rng.integers(1, 3))
    h, w = int(rng.integers(dh * (kh - 1) + 1, 16)), int(rng.integers(dw * (kw - 1) + 1, 20))
    pt, pb, pl, pr = (int(v) for v in rng.integers(0, 3, size=4))
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    zx = int(rng.integers(0, 256))
    x = torch.from_numpy(rng.integers(0, 256, size=(n, h, w, c)))
    wt = torch.from_numpy(rng.integers(-128, 128, size=(kh, kw, c)))
    init = torch.from_numpy(rng.integers(-1000, 1000, size=c)).to(torch.int32)
    xp = torch.nn.functional.pad(x.permute(0, 3, 1, 2).to(torch.float64), (pl, pr, pt, pb), value=float(zx))
    want = torch.nn.functional.conv2d(xp, wt.permute(2, 0, 1).unsqueeze(1).to(torch.float64), stride=(sh, sw),
                                      dilation=(dh, dw), groups=c)
    want = want[:, :, :oh, :ow].permute(0, 2, 3, 1).to(torch.int64) + init.to(torch.int64)
    return x, wt, init, (n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, zx), want


@pytest.mark.parametrize("seed", range(12))
def test_int8_depthwise_exact(int8_lib, pool: int, seed: int) -> None:
    """Depthwise accumulators (3x3 kernels and others) equal a float64 convolution."""
    x, wt, init, geo, want = _depthwise_case(seed)
    dwk = native.Int8Depthwise(int8_lib, wt.to(torch.int8), init, native._identity_rq(int8_lib, geo[3]), geo)
    assert torch.equal(dwk.run(x.to(torch.uint8)).to(torch.int64) - native.IDENTITY_OFFSET, want)


@pytest.mark.parametrize("dyn", [False, True])
@pytest.mark.parametrize("folded", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_int8_depthwise_requantized_in_registers(vnni_lib, pool: int, dyn: bool, folded: bool, seed: int) -> None:
    """The depthwise kernel requantizes in registers with the float32 estimate's plan: its outputs
    equal exact integer arithmetic on the exact accumulators."""
    x, wt, init, geo, acc = _depthwise_case(seed)
    rng = np.random.default_rng(seed + 100)
    forms, reference = _estimate_requant(vnni_lib, rng, geo[3], int(acc.abs().max()) + 1, dyn, folded)
    for rq in forms:
        dwk = native.Int8Depthwise(vnni_lib, wt.to(torch.int8), init, rq, geo)
        assert torch.equal(dwk.run(x.to(torch.uint8)), reference(acc))


@pytest.mark.parametrize("xdtype", [torch.int32, torch.float32])
@pytest.mark.parametrize("dyn", [False, True])
@pytest.mark.parametrize("folded", [False, True])
def test_float32_estimate_requant_exact(lib, dyn: bool, folded: bool, xdtype: torch.dtype) -> None:
    """requant.c's float32 estimate with its bracket check (rqf_*) equals exact integer arithmetic,
    on random accumulators and on ones that put y next to integers; with a bound too large to ever
    bracket, every lane takes the float64 fallback, which must agree too. Float32 accumulators
    (holding integers, as oneDNN's convolutions give) take the same kernels."""
    if not lib.openqnn_rqv_available():
        pytest.skip("no AVX-512: the hand-vectorized requantization is not built")
    rng = np.random.default_rng(int(dyn) * 2 + int(folded))
    ch = 37
    s = 31 + 6
    mul = torch.tensor([float(m) * 2.0**-s for m in rng.integers(1 << 29, 1 << 31, size=ch)], dtype=torch.float64)
    cst = torch.tensor(rng.integers(-(1 << 44), 1 << 44, size=ch) * 2.0**-s, dtype=torch.float64)
    madd = torch.tensor(rng.integers(-3, 130, size=ch), dtype=torch.int32)
    x = torch.from_numpy(rng.integers(-(1 << 21), 1 << 21, size=(400, ch))).to(torch.int32)  # x * mul exact
    # accumulators whose y lies next to an integer
    yi = torch.from_numpy(rng.integers(-300, 300, size=(100, ch)))
    xi = torch.round((yi - cst) / mul).to(torch.int64) + torch.from_numpy(rng.integers(-1, 2, size=(100, ch)))
    x = torch.cat([x, xi.clamp(-(1 << 21), (1 << 21) - 1).to(torch.int32)])
    nd = torch.full((ch,), -2.0**-6, dtype=torch.float64) if dyn else torch.zeros(ch, dtype=torch.float64)
    xthr = torch.from_numpy(rng.integers(-(1 << 20), 1 << 20, size=ch)).to(torch.int32)
    dyn_t = (torch.zeros(ch, dtype=torch.float64), torch.zeros(ch, dtype=torch.float64), nd) if dyn else None
    ybound = float((x.abs().max().item() * mul.abs().max() + cst.abs().max() + 300).item())
    eps = requant_mod._estimate_error(cst, mul, nd, [int(x.abs().max())] * ch, ybound)
    assert eps is not None
    for e in (eps, 0.75):  # the estimate's bound, and one under which no lane brackets
        fast = native.NativeRequant(lib, xdtype, torch.uint8, 255, cst, mul, madd, folded, dyn_t, None, xthr, e)
        assert fast.fn.__name__.startswith("rqf_")
        want = _reference_rows(x, cst, mul, nd, xthr, madd, folded, dyn)
        assert torch.equal(fast.run(x.to(xdtype)), want)


def _reference_rows(x: torch.Tensor, cst: torch.Tensor, mul: torch.Tensor, nd: torch.Tensor, xthr: torch.Tensor,
                    madd: torch.Tensor, folded: bool, dyn: bool) -> torch.Tensor:
    """requant.c's arithmetic in exact integers (every constant a multiple of 2^-37)."""
    scale = 2**37
    y = (torch.round(cst * scale).to(torch.int64) + x.to(torch.int64) * torch.round(mul * scale).to(torch.int64))
    if dyn:
        y = y + torch.where(x < xthr, torch.round(nd * scale).to(torch.int64), 0)
    fl = torch.div(y, scale, rounding_mode="floor")
    if folded:
        return fl.clamp(0, 255).to(torch.uint8)
    return (fl.clamp(-(1 << 30), 1 << 30) + madd.to(torch.int64)).clamp(0, 255).to(torch.uint8)


def test_isa_cap_builds_the_avx2_paths_with_the_same_bits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """OPENQNN_MAX_ISA=avx2 builds the helpers without AVX-512: the hand-vectorized requantization compiles out,
    the int8 kernels are int8.c's AVX2 ones, and a quantized model gives the bits it gives with everything this
    CPU has."""
    import os
    import platform
    import subprocess
    import sys

    code = """
import sys, numpy as np, openqnn
sys.path.insert(0, 'tests')
from onnx import TensorProto, helper, numpy_helper
from helpers import make_model
from openqnn.backends.htp import native
rng = np.random.default_rng(0)
w = numpy_helper.from_array((0.3 * rng.standard_normal((16, 8, 1, 1))).astype(np.float32), 'w')
d = numpy_helper.from_array((0.3 * rng.standard_normal((16, 1, 3, 3))).astype(np.float32), 'd')
nodes = [helper.make_node('Conv', ['x', 'w'], ['c']), helper.make_node('Relu', ['c'], ['r']),
         helper.make_node('Conv', ['r', 'd'], ['y'], pads=[1, 1, 1, 1], group=16)]
g = openqnn.convert(make_model(nodes, [('x', TensorProto.FLOAT, [1, 8, 12, 12])], [('y', TensorProto.FLOAT, [1, 16, 12, 12])], [w, d]))
cal = [{'x': rng.random((1, 8, 12, 12), dtype=np.float32)} for _ in range(4)]
q = openqnn.quantize(g, cal, openqnn.QuantizerConfig(use_per_channel_quantization=True))
out = openqnn.Session(q, backend='htp').run(cal[0], native_outputs=True)['y']
lib = native.library()
print(int(bool(lib.openqnn_rqv_available())), native.int8_isa(), out.tobytes().hex())
"""
    runs = {}
    for isa in ("native", "avx2"):
        env = dict(os.environ, OPENQNN_MAX_ISA=isa, OPENQNN_CACHE_DIR=str(tmp_path))
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                           cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
        assert r.returncode == 0, r.stderr[-2000:]
        runs[isa] = r.stdout.split()
    if platform.machine().lower() in ("x86_64", "amd64"):  # capped: no AVX-512 kernels in the build
        assert runs["avx2"][:2] == ["0", "avx2"]
    assert runs["avx2"][2] == runs["native"][2]


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("xdtype", [torch.int32, torch.float32, torch.float64])
def test_qnn_requant_in_c_equals_the_spec(lib, arch: str, xdtype: torch.dtype) -> None:
    """QNN's requantization in C (requant.c's rqq_*: two floors in float64) gives the spec's codes
    (spec/qnn_requant.py, int64 shifts) for multipliers from 1e-5 to 4, offsets, coefficients and the
    accumulator's extremes."""
    from openqnn.backends.htp.kernels.requant import QnnRequant
    from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec

    rng = np.random.default_rng(7 + len(arch) + xdtype.itemsize)
    lim = 1 << 24 if xdtype == torch.float32 else 1 << 31
    for trial in range(40):
        ch = int(rng.integers(1, 70))
        real = np.exp(rng.uniform(np.log(1e-5), np.log(4.0), ch))
        spec = QnnRequantSpec.of(arch, real, int(rng.integers(0, 256)))
        rq = QnnRequant(real, spec, False, torch.device("cpu"))
        off = rng.integers(-10**6, 10**6, ch)
        coef = int(rng.choice([1, -1, 3]))
        run = rq.fast(off, [(coef, np.full(ch, 2.0**20))], xdtype)
        assert rq.native_form is not None
        x = rng.integers(-lim + 1, lim, (int(rng.integers(1, 40)), ch))
        x[0] = lim - 1
        x[-1] = -lim + 1
        got = run(torch.from_numpy(x).to(xdtype)).numpy().astype(np.int64)
        np.testing.assert_array_equal(got, spec.apply_np(off + coef * x), err_msg=f"trial {trial}")


@pytest.mark.parametrize("geo", [(1, 9, 11, 3, 3, 3, 2, 2, 1, 1, 1, 1), (2, 7, 6, 5, 2, 3, 1, 2, 2, 1, 0, 2),
                                 (1, 5, 8, 17, 7, 7, 2, 2, 1, 1, 3, 3), (1, 6, 6, 4, 3, 2, 1, 1, 1, 3, 2, 0)])
@pytest.mark.parametrize("threads", [1, 3])
def test_im2col_in_c_equals_the_strided_view(lib, geo: tuple[int, ...], threads: int) -> None:
    """int8.c's im2col_u8 (runs of bytes, the zero point outside the input) against a padded tensor's strided
    view, for strides, dilations, asymmetric padding and a run crossing the edge; on 1 thread and with its
    output rows split among 3 however small."""
    macs = ctypes.c_double.in_dll(lib, "openqnn_parallel_macs")
    saved = macs.value
    macs.value = 0.0 if threads > 1 else saved
    native.sync_threads(threads)
    try:
        _im2col_case(geo)
    finally:
        macs.value = saved
        native.sync_threads(1)


def _im2col_case(geo: tuple[int, ...]) -> None:
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl = geo
    oh = (h + 2 * pt - (kh - 1) * dh - 1) // sh + 1
    ow = (w + pl + 1 - (kw - 1) * dw - 1) // sw + 1  # (one column of right padding)
    zx = 37
    x = torch.randint(0, 256, (n, h, w, c), dtype=torch.uint8, generator=torch.Generator().manual_seed(sum(geo)))
    out = torch.empty((n * oh * ow, kh * kw * c), dtype=torch.uint8)
    native.Im2col((n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow), zx).run(x, out)
    p = torch.full((n, h + 2 * pt, w + pl + 1 + kw * dw, c), zx, dtype=torch.uint8)
    p[:, pt:pt + h, pl:pl + w] = x
    s = p.stride()
    want = p.as_strided((n, oh, ow, kh, kw, c), (s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3]))
    assert torch.equal(out, want.reshape(n * oh * ow, -1))
