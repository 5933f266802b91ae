"""The cpu backend's native float32 kernels (float.c): against float64 PyTorch, the same bits on any thread
count, in the plans that choose them, and in builds capped below this CPU."""

from __future__ import annotations

import ctypes
import math
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from openqnn.backends import native as shared
from openqnn.backends.cpu import native
from openqnn.backends.cpu.plan import Plan

pytestmark = pytest.mark.skipif(native.library() is None, reason="no C compiler: the native kernels are not built here")


@pytest.fixture
def small_tasks() -> Iterator[None]:
    """Let the pool split even these small shapes (as it splits a model's layers)."""
    lib = shared.library()
    assert lib is not None
    macs = ctypes.c_double.in_dll(lib, "openqnn_parallel_macs")
    saved, threads = macs.value, shared.pool_threads()
    macs.value = 0.0
    try:
        yield
    finally:
        macs.value = saved
        shared.sync_threads(threads)


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    scale = max(1.0, float(want.abs().max()))
    assert float((got.double() - want).abs().max()) <= 2e-5 * scale


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (1, 1280, 1000), (5, 3, 17), (64, 128, 384), (97, 24, 144),
                                   (13, 40, 8), (200, 16, 33), (29, 1100, 40), (25, 1024, 20), (7, 2048, 70)])
@pytest.mark.parametrize("epilogue", ["none", "add", "relu", "add_relu6"])
def test_gemm_matches_float64_and_every_thread_count(m: int, k: int, n: int, epilogue: str, small_tasks: None) -> None:
    g = torch.Generator().manual_seed(m * 1000 + k + n)
    x, w, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g)
    add = torch.randn(m, n, generator=g) if "add" in epilogue else None
    clamp = {"relu": (0.0, math.inf), "add_relu6": (0.0, 6.0)}.get(epilogue)
    want = torch.nn.functional.linear(x.double(), w.double(), b.double())
    if add is not None:
        want = want + add.double()
    if clamp is not None:
        want = want.clamp(*clamp)
    gemm = native.Gemm(w, b, clamp)
    outs = []
    for threads in (1, 2, 3):
        shared.sync_threads(threads)
        outs.append(gemm.run(x, (m, n), add))
    _close(outs[0], want)
    assert all(torch.equal(outs[0], o) for o in outs[1:])


def test_gemm_without_bias_and_over_leading_axes() -> None:
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(2, 3, 7, 50, generator=g), torch.randn(40, 50, generator=g)
    got = native.Gemm(w, None).run(x, (2, 3, 7, 40))
    _close(got, x.double() @ w.double().T)


@pytest.mark.parametrize("h,w,c,k,s,d,pads", [
    (112, 112, 32, 3, 1, 1, (1, 1, 1, 1)), (56, 56, 144, 3, 2, 1, (0, 0, 1, 1)), (9, 11, 21, 3, 2, 1, (1, 0, 1, 0)),
    (7, 7, 960, 3, 1, 1, (1, 1, 1, 1)), (10, 9, 5, 5, 1, 2, (4, 4, 4, 4)), (8, 8, 17, 1, 1, 1, (0, 0, 0, 0)),
    (6, 6, 16, 7, 3, 1, (3, 3, 2, 2)), (4, 4, 3, 3, 1, 1, (2, 2, 2, 2)),
])
@pytest.mark.parametrize("epilogue", ["relu6", "add"])
def test_depthwise_matches_float64_and_every_thread_count(h: int, w: int, c: int, k: int, s: int, d: int,
                                                          pads: tuple[int, int, int, int], epilogue: str,
                                                          small_tasks: None) -> None:
    """Odd channel counts (vector tails), asymmetric and oversized padding, dilation, strides, batch 2."""
    g = torch.Generator().manual_seed(h * w + c + k)
    pt, pb, pl, pr = pads
    x, wt, b = torch.randn(2, h, w, c, generator=g), torch.randn(k, k, c, generator=g), torch.randn(c, generator=g)
    xp = torch.nn.functional.pad(x.permute(0, 3, 1, 2).double(), (pl, pr, pt, pb))
    want = torch.nn.functional.conv2d(xp, wt.permute(2, 0, 1).unsqueeze(1).double(), b.double(), s, 0, d, c)
    want = want.permute(0, 2, 3, 1)
    oh, ow = want.shape[1:3]
    add = torch.randn(2, oh, ow, c, generator=g) if epilogue == "add" else None
    clamp = (0.0, 6.0) if epilogue == "relu6" else None
    want = want + add.double() if add is not None else want.clamp(0.0, 6.0)
    dw = native.Depthwise(wt, b, (2, h, w, c, k, k, s, s, d, d, pt, pl, oh, ow), clamp)
    outs = []
    for threads in (1, 2, 3):
        shared.sync_threads(threads)
        outs.append(dw.run(x, add))
    _close(outs[0], want)
    assert all(torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("h,w,c,cout,k,s,d,pads", [
    (32, 32, 3, 16, 3, 2, 1, (1, 1, 1, 1)), (9, 11, 5, 33, 3, 1, 1, (0, 2, 1, 0)), (12, 10, 96, 20, 3, 1, 1, (1, 1, 1, 1)),
    (10, 10, 4, 8, 5, 2, 2, (3, 3, 3, 3)), (8, 9, 7, 12, 1, 1, 1, (0, 0, 0, 0)), (5, 5, 2, 3, 7, 1, 1, (3, 3, 3, 3)),
    (3, 60, 3, 20, 3, 1, 1, (1, 1, 1, 1)), (14, 14, 64, 40, 1, 2, 1, (0, 0, 0, 0)), (7, 7, 80, 36, 3, 1, 1, (1, 1, 1, 1)),
])
@pytest.mark.parametrize("epilogue", ["relu6", "add"])
def test_conv_matches_float64_and_every_thread_count(h: int, w: int, c: int, cout: int, k: int, s: int, d: int,
                                                     pads: tuple[int, int, int, int], epilogue: str,
                                                     small_tasks: None) -> None:
    """The implicit GEMM over the (padded) input: strides, dilation, asymmetric padding, chunks of a long K (96 x
    3 x 3, 80 x 3 x 3), windows larger than the input, batch 2; tiles of pixels across output rows and images
    (small images), and within rows (a 60-wide one); a strided 1x1 convolution."""
    g = torch.Generator().manual_seed(h * w + c + k + cout)
    pt, pb, pl, pr = pads
    x, wt, b = torch.randn(2, h, w, c, generator=g), torch.randn(cout, k, k, c, generator=g), torch.randn(cout, generator=g)
    xp = torch.nn.functional.pad(x.permute(0, 3, 1, 2).double(), (pl, pr, pt, pb))
    want = torch.nn.functional.conv2d(xp, wt.permute(0, 3, 1, 2).double(), b.double(), s, 0, d).permute(0, 2, 3, 1)
    oh, ow = want.shape[1:3]
    add = torch.randn(2, oh, ow, cout, generator=g) if epilogue == "add" else None
    want = want + add.double() if add is not None else want.clamp(0.0, 6.0)
    conv = native.Conv(wt, b, (2, h, w, c, k, k, s, s, d, d, pt, pl, oh, ow), (0.0, 6.0) if add is None else None)
    outs = []
    for threads in (1, 2, 3):
        shared.sync_threads(threads)
        outs.append(conv.run(x, add))
    _close(outs[0], want)
    assert all(torch.equal(outs[0], o) for o in outs[1:])


def test_plans_run_stems_and_downsampling_native(tmp_path) -> None:
    """A 7x7 stem of 3 channels and a strided 1x1 convolution (ResNets' downsampling) take the native implicit
    GEMM (faster than oneDNN there) and match the model; larger strided 1x1 weights stay oneDNN's."""
    import openqnn

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.ds = torch.nn.Conv2d(3, 16, 7, 2, 3), torch.nn.Conv2d(16, 32, 1, 2)
            self.big = torch.nn.Conv2d(32, 2**13 + 8, 1, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.big(self.ds(torch.relu(self.stem(x))))

    model, x = Net().eval(), torch.randn(1, 3, 40, 40)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (on more, a plan with a oneDNN convolution keeps oneDNN throughout)
    try:
        plan = Plan(openqnn.convert(path))
    finally:
        torch.set_num_threads(threads)
    assert [p for op, p in plan.paths if op.startswith("Conv2d")] == ["native", "native", "onednn"]
    with torch.no_grad():
        want = model(x).numpy()
    got = plan.run({"x": x.numpy()})["y"]
    assert np.abs(got - want).max() <= 1e-5 * float(np.abs(want).max())


def _mobile_block() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, 2, 1), torch.nn.ReLU6(),
        torch.nn.Conv2d(16, 48, 1), torch.nn.ReLU6(),
        torch.nn.Conv2d(48, 48, 3, 1, 1, groups=48), torch.nn.ReLU6(),
        torch.nn.Conv2d(48, 16, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()


def test_plans_choose_the_native_kernels_and_match_onednn_and_the_model(tmp_path, monkeypatch) -> None:
    import openqnn

    model = _mobile_block()
    x = torch.randn(1, 3, 32, 32)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    graph = openqnn.convert(path)
    feeds = {"x": x.numpy()}
    calls: list[str] = []
    for cls in (native.Conv, native.Gemm, native.Depthwise, native.PointwiseDepthwise):
        real = cls.run
        monkeypatch.setattr(cls, "run", lambda self, *a, _r=real, _n=cls.__name__, **k: (calls.append(_n), _r(self, *a, **k))[1])
    real_step = native.Gemm.step  # (a plan's GEMM steps call the closure Gemm.step makes, not Gemm.run)

    def counted_step(self: native.Gemm, *a: object, **k: object) -> object:
        fn = real_step(self, *a, **k)  # type: ignore[arg-type]
        return lambda *xs: (calls.append("Gemm"), fn(*xs))[1]

    monkeypatch.setattr(native.Gemm, "step", counted_step)
    fast = Plan(graph).run(feeds)["y"]
    # the first convolution (3 channels); the expansion, the depthwise convolution and the projection fused; the
    # Linear
    assert calls.count("Conv") == 1 and calls.count("PointwiseDepthwise") == 1 and calls.count("Gemm") == 1
    monkeypatch.setattr(native, "library", lambda: None)
    onednn = Plan(graph).run(feeds)["y"]
    with torch.no_grad():
        want = model(x).numpy()
    scale = float(np.abs(want).max())
    assert np.abs(fast - want).max() <= 1e-5 * scale
    assert np.abs(onednn - want).max() <= 1e-5 * scale


@pytest.mark.parametrize("cap,isa", [("avx2", "avx2-fma"), ("baseline", "portable")])
def test_capped_builds_pass_their_check(cap: str, isa: str, tmp_path) -> None:
    """The AVX2 and portable forms, built on this machine by capping the ISA, pass the self-check (odd shapes
    against float64) and report what they are."""
    if os.uname().machine not in ("x86_64", "AMD64") and cap == "avx2":
        pytest.skip("an x86 cap")
    env = dict(os.environ, OPENQNN_MAX_ISA=cap, OPENQNN_CACHE_DIR=str(tmp_path))
    code = "from openqnn.backends.cpu import native; print(native.float_isa())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == isa


@pytest.mark.parametrize("h,w,cin,ce,k,s,pads,clamps", [
    (112, 112, 16, 96, 3, 2, (0, 1, 0, 1), ("relu6", "relu6")), (9, 7, 5, 21, 3, 1, (1, 1, 1, 1), (None, "relu")),
    (10, 12, 8, 40, 5, 2, (2, 2, 2, 2), ("relu", None)), (6, 6, 3, 17, 3, 1, (0, 0, 0, 0), (None, None)),
    (4, 4, 1030, 16, 3, 1, (1, 1, 1, 1), ("relu6", "relu6")), (7, 7, 24, 160, 3, 1, (1, 1, 1, 1), ("relu6", "relu6")),
    (14, 14, 32, 200, 3, 2, (0, 1, 0, 1), ("relu6", None)),
])
def test_pointwise_depthwise_matches_its_parts_and_every_thread_count(h: int, w: int, cin: int, ce: int, k: int,
                                                                      s: int, pads: tuple[int, int, int, int],
                                                                      clamps: tuple[str | None, str | None],
                                                                      small_tasks: None) -> None:
    """Expanded rows made as the windows reach them (strides, padding, a ring of 3 and 5 rows, a long 1x1 sum)
    equal the 1x1 and depthwise kernels run one after the other, bit for bit, on 1 to 3 threads (bands of rows;
    groups of channels for small images)."""
    g = torch.Generator().manual_seed(h + w + cin + ce + k)
    bounds = {"relu6": (0.0, 6.0), "relu": (0.0, math.inf), None: None}
    pt, pb, pl, pr = pads
    x, pw, pb_ = torch.randn(2, h, w, cin, generator=g), torch.randn(ce, cin, generator=g), torch.randn(ce, generator=g)
    dw, db = torch.randn(k, k, ce, generator=g), torch.randn(ce, generator=g)
    oh, ow = (h + pt + pb - k) // s + 1, (w + pl + pr - k) // s + 1
    geo = (2, h, w, ce, k, k, s, s, 1, 1, pt, pl, oh, ow)
    parts = native.Depthwise(dw, db, geo, bounds[clamps[1]]).run(
        native.Gemm(pw, pb_, bounds[clamps[0]]).run(x, (2, h, w, ce)))
    fused = native.PointwiseDepthwise(pw, pb_, bounds[clamps[0]], dw, db, geo, bounds[clamps[1]])
    for threads in (1, 2, 3):
        shared.sync_threads(threads)
        assert torch.equal(fused.run(x), parts)
    # with the projection (a 1x1 convolution of the depthwise's output) and a residual, as the last step of an
    # inverted residual block: the same bits as the projection's own GEMM on the depthwise's output
    cout = 1 + (ce * 7) % 61
    pj, pjb = torch.randn(cout, ce, generator=g), torch.randn(cout, generator=g)
    res = torch.randn(2, oh, ow, cout, generator=g)
    want = native.Gemm(pj, pjb).run(parts, (2, oh, ow, cout), res)
    projected = native.PointwiseDepthwise(pw, pb_, bounds[clamps[0]], dw, db, geo, bounds[clamps[1]],
                                          native.Gemm(pj, pjb))
    for threads in (1, 2, 3):
        shared.sync_threads(threads)
        assert torch.equal(projected.run(x, res), want)
        assert torch.equal(projected.run(x), native.Gemm(pj, pjb).run(parts, (2, oh, ow, cout)))


def test_mobilenet_blocks_fuse_and_read_back_from_their_plans(tmp_path) -> None:
    import openqnn
    from openqnn.backends.cpu.steps import plan_steps

    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU6(),
        torch.nn.Conv2d(8, 48, 1), torch.nn.ReLU6(), torch.nn.Conv2d(48, 48, 3, 2, 1, groups=48), torch.nn.ReLU6(),
        torch.nn.Conv2d(48, 16, 1),
        torch.nn.Conv2d(16, 32, 1), torch.nn.Conv2d(32, 32, 5, 1, 2, groups=32)).eval()
    x = torch.randn(1, 3, 40, 40)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    graph = openqnn.convert(path)
    plans = plan_steps(graph)
    # with clamps and the projection (48 -> 16), and without either
    assert [p.op_type for p in plans if p.kernel == "cpu.pw_dw"] == [
        "Conv2d+ReluMinMax+DepthWiseConv2d+ReluMinMax+Conv2d", "Conv2d+DepthWiseConv2d"]
    feeds = {"x": x.numpy()}
    fresh = Plan(graph).run(feeds)["y"]
    np.testing.assert_array_equal(Plan.from_plans(graph, plans).run(feeds)["y"], fresh)
    with torch.no_grad():
        want = model(x).numpy()
    assert np.abs(fresh - want).max() <= 1e-5 * float(np.abs(want).max())


def test_a_projection_is_not_taken_from_the_next_expansion(tmp_path) -> None:
    """1x1 -> depthwise -> 1x1 -> depthwise -> 1x1: the second 1x1 expands for its depthwise convolution, it is not
    the first pair's projection; the last 1x1 is the second pair's."""
    import openqnn
    from openqnn.backends.cpu.steps import plan_steps

    torch.manual_seed(2)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 1), torch.nn.Conv2d(16, 16, 3, 1, 1, groups=16),
        torch.nn.Conv2d(16, 24, 1), torch.nn.Conv2d(24, 24, 3, 1, 1, groups=24), torch.nn.Conv2d(24, 8, 1)).eval()
    x = torch.randn(1, 3, 12, 12)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    graph = openqnn.convert(path)
    assert [p.op_type for p in plan_steps(graph) if p.kernel == "cpu.pw_dw"] == [
        "Conv2d+DepthWiseConv2d", "Conv2d+DepthWiseConv2d+Conv2d"]
    with torch.no_grad():
        want = model(x).numpy()
    got = Plan(graph).run({"x": x.numpy()})["y"]
    assert np.abs(got - want).max() <= 1e-5 * float(np.abs(want).max())


@pytest.mark.parametrize("act,approximate", [("gelu", "none"), ("gelu_tanh", "tanh")])
def test_gemm_gelu_epilogue_is_within_float32_reach_of_float64(act: str, approximate: str) -> None:
    """The fused GELU over its whole range (erf by a polynomial with the exponential, or tanh from it): no further
    from float64 than PyTorch's own float32 GELU is, plus a few float32 steps."""
    x = torch.linspace(-12.0, 12.0, 24001).reshape(-1, 1)
    got = native.Gemm(torch.ones(1, 1), None, None, act).run(x, (24001, 1)).double()
    want = torch.nn.functional.gelu(x.double(), approximate=approximate)
    torch_err = float((torch.nn.functional.gelu(x, approximate=approximate).double() - want).abs().max())
    assert float((got - want).abs().max()) <= max(torch_err, 5e-7)


def test_fully_connected_gelu_fuses_and_reads_back(tmp_path) -> None:
    import openqnn
    from openqnn.backends.cpu.steps import plan_steps

    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 16),
                                torch.nn.GELU(approximate="tanh")).eval()
    x = torch.randn(1, 9, 16)
    path = tmp_path / "mlp.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False, opset_version=20)
    graph = openqnn.convert(path)
    plan = Plan(graph)
    assert plan.op_types == ["FullyConnected+Gelu", "FullyConnected+Gelu"]
    feeds = {"x": x.numpy()}
    got = plan.run(feeds)["y"]
    np.testing.assert_array_equal(Plan.from_plans(graph, plan_steps(graph)).run(feeds)["y"], got)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_several_threads_keep_one_thread_pool(tmp_path) -> None:
    """On several threads a plan whose convolutions need oneDNN runs oneDNN throughout (its OpenMP pool and the
    native pool would spin on each other's cores); a plan the native kernels take whole runs them on every
    thread, PyTorch's own ops on one meanwhile (its count put back after), with the bits of one thread."""
    import openqnn

    torch.manual_seed(3)
    dense = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.Conv2d(8, 16, 1), torch.nn.ReLU()).eval()
    mobile = torch.nn.Sequential(torch.nn.Conv2d(8, 32, 1), torch.nn.ReLU6(),
                                 torch.nn.Conv2d(32, 32, 3, padding=1, groups=32), torch.nn.Conv2d(32, 8, 1)).eval()
    x = torch.randn(1, 8, 20, 20)
    before = torch.get_num_threads()
    try:
        for name, model, native_at_two in (("dense", dense, False), ("mobile", mobile, True)):
            path = tmp_path / f"{name}.onnx"
            torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
            graph = openqnn.convert(path)
            torch.set_num_threads(1)
            one = Plan(graph)
            assert any(p == "native" for _, p in one.paths)
            want = one.run({"x": x.numpy()})["y"]
            torch.set_num_threads(2)
            two = Plan(graph)
            assert any(p == "native" for _, p in two.paths) is native_at_two
            got = two.run({"x": x.numpy()})["y"]
            assert torch.get_num_threads() == 2
            if native_at_two:
                np.testing.assert_array_equal(got, want)
            else:
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("rows,n,affine", [(1, 1, True), (64, 128, True), (37, 768, False), (5, 23, True)])
def test_layer_norm_matches_float64_and_every_thread_count(rows: int, n: int, affine: bool, small_tasks: None) -> None:
    g = torch.Generator().manual_seed(rows + n)
    x = torch.randn(rows, n, generator=g) * 4 + 2
    gm, bt = (torch.randn(n, generator=g), torch.randn(n, generator=g)) if affine else (None, None)
    want = torch.nn.functional.layer_norm(x.double(), (n,), None if gm is None else gm.double(),
                                          None if bt is None else bt.double(), 1e-5)
    ln = native.LayerNorm(n, gm, bt, 1e-5)
    outs = []
    for threads in (1, 2, 3):
        shared.sync_threads(threads)
        outs.append(ln.run(x))
    _close(outs[0], want)
    assert all(torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("b,h,sq,sk,d,dv", [(1, 4, 64, 64, 32, 32), (2, 3, 7, 37, 5, 19), (1, 1, 1, 1, 1, 1),
                                            (1, 12, 33, 129, 64, 64)])
def test_attention_matches_float64_and_every_thread_count(b: int, h: int, sq: int, sk: int, d: int, dv: int,
                                                          small_tasks: None) -> None:
    g = torch.Generator().manual_seed(b * h + sq + sk)
    q, k, v = torch.randn(b, h, sq, d, generator=g), torch.randn(b, h, sk, d, generator=g), torch.randn(b, h, sk, dv, generator=g)
    mask = torch.where(torch.rand(b, 1, 1, sk, generator=g) < 0.2, -10000.0, 0.0)
    want = torch.softmax(q.double() @ k.double().transpose(-1, -2) * 0.125 + mask.double(), -1) @ v.double()
    att = native.Attention((b, h, sq, sk, d, dv), 0.125, q.stride(), k.stride(), v.stride(),  # type: ignore[arg-type]
                           (h * sq * dv, sq * dv, dv, 1), (b, h, sq, dv))
    outs = []
    for threads in (1, 2, 3):
        shared.sync_threads(threads)
        outs.append(att.run(q, k, v, mask))
    _close(outs[0], want)
    assert all(torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("outer,rows,inner", [(1, 49, 1280), (2, 7, 37), (3, 128, 384), (1, 5, 1), (4, 1, 70)])
@pytest.mark.parametrize("mean", [True, False])
def test_row_sums_match_float64(outer: int, rows: int, inner: int, mean: bool) -> None:
    x = torch.randn(outer, rows, inner, generator=torch.Generator().manual_seed(rows + inner))
    got = native.RowSum(outer, rows, inner, mean, (outer, inner)).run(x)
    _close(got, x.double().mean(1) if mean else x.double().sum(1))


def test_global_average_pool_runs_native(tmp_path) -> None:
    import openqnn

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 40, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    x = torch.randn(2, 3, 9, 9)
    path = tmp_path / "gap.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plan = Plan(openqnn.convert(path))
    finally:
        torch.set_num_threads(threads)
    assert ("ReduceMean", "native") in plan.paths
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(plan.run({"x": x.numpy()})["y"], want, rtol=1e-5, atol=1e-5)
