"""Steps that write their output over a dead residual operand (the executor's ``over``): taken only where
nothing else can see that operand, and the same bits as the step writing fresh memory."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from openqnn.backends import executor
from openqnn.backends import native as shared
from openqnn.backends.cpu import native
from openqnn.backends.cpu.plan import Plan
from openqnn.backends.executor import BoundStep, Executor

needs_native = pytest.mark.skipif(native.library() is None, reason="no C compiler: the native kernels are not built here")


def _steps(second_in: list[str], make_r: Callable[[torch.Tensor], torch.Tensor], calls: list[str],
           later: bool = False) -> list[BoundStep]:
    """``r = make_r(x)``; ``y = x * 2 + r`` (with an ``over`` form writing into its last input); ``later``: one
    more step reads ``r`` after."""

    def fresh(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        calls.append("fresh")
        return x * 2 + r

    def over(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        calls.append("over")
        return r.add_(x * 2)

    steps = [BoundStep(make_r, ["x"], ["r"], "a", "A"),
             BoundStep(fresh, second_in, ["y"], "b", "B", over)]
    if later:
        steps.append(BoundStep(lambda y, r: y + r, ["y", "r"], ["z"], "c", "C"))
    return steps


def test_over_is_taken_where_the_residual_dies_and_nothing_else_holds_it() -> None:
    calls: list[str] = []
    x = torch.arange(4.0)
    (y,) = Executor(_steps(["x", "r"], lambda x: x + 1, calls), ["x"], ["y"]).run([x])
    assert calls == ["over"] and torch.equal(y, x * 3 + 1) and torch.equal(x, torch.arange(4.0))


@pytest.mark.parametrize("case", ["read_later", "graph_input", "view_of_input", "same_object", "output"])
def test_over_is_refused_where_the_residual_is_seen_elsewhere(case: str) -> None:
    calls: list[str] = []
    x = torch.arange(4.0)
    outputs = ["z"] if case == "read_later" else ["y"]
    if case == "read_later":
        steps = _steps(["x", "r"], lambda x: x + 1, calls, later=True)
    elif case == "graph_input":  # the residual is the caller's tensor
        steps = _steps(["r", "x"], lambda x: x + 1, calls)
    elif case == "view_of_input":  # a view of the caller's tensor
        steps = _steps(["x", "r"], lambda x: x.view(4), calls)
    elif case == "same_object":  # two slots hold one tensor; the other is read after
        steps = [*_steps(["x", "r2"], lambda x: x + 1, calls), BoundStep(lambda y, r: y + r, ["y", "r"], ["z"], "c", "C")]
        steps.insert(1, BoundStep(lambda r: r, ["r"], ["r2"], "a2", "Identity"))
        outputs = ["z"]
    else:  # the residual is a graph output too
        steps = _steps(["x", "r"], lambda x: x + 1, calls)
        outputs = ["y", "r"]
    got = Executor(steps, ["x"], outputs).run([x])
    assert calls == ["fresh"]
    assert torch.equal(x, torch.arange(4.0))
    if case in ("read_later", "same_object"):
        assert torch.equal(got[0], (x * 3 + 1) + (x + 1))


def test_the_sole_holder_count_is_calibrated_for_this_interpreter() -> None:
    # (each answer is taken outside an assert: pytest's rewritten asserts hold references of their own)
    assert executor._SOLE_REFS > 0
    args = [torch.empty(2)]
    alone = executor._sole(args[-1])
    other = args[0]
    held = executor._sole(args[-1])
    del other
    view = args[0][1:]
    viewed = executor._sole(args[-1])
    del view
    again = executor._sole(args[-1])
    args = [torch.empty(3)[1:]]
    a_view = executor._sole(args[-1])
    assert (alone, held, viewed, again, a_view) == (True, False, False, True, False)


@needs_native
@pytest.mark.parametrize("m,k,n", [(50, 64, 40), (29, 1100, 40), (7, 2048, 70), (1, 3, 5)])
def test_gemm_over_gives_the_fresh_bits_on_every_thread_count(m: int, k: int, n: int) -> None:
    """Long sums (over 512 terms) run in chunks into a fresh output, whole over the residual: the same bits."""
    g = torch.Generator().manual_seed(m + k + n)
    x, w, b, add = (torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g),
                    torch.randn(m, n, generator=g))
    gemm = native.Gemm(w, b, (0.0, math.inf))
    fresh, over = gemm.step((m, n), add=True), gemm.step_over((m, n))
    assert over is not None
    threads = shared.pool_threads()
    try:
        for t in (1, 2, 3):
            shared.sync_threads(t)
            want = fresh(x, add)
            other = add.clone()
            got = over(x, other)
            assert got.data_ptr() == other.data_ptr() and torch.equal(got, want)
    finally:
        shared.sync_threads(threads)


@needs_native
def test_convolutions_over_give_the_fresh_bits() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 9, 9, 16, generator=g)
    geo = (1, 9, 9, 16, 3, 3, 1, 1, 1, 1, 1, 1, 9, 9)
    for kernel, cout in ((native.Conv(torch.randn(24, 3, 3, 16, generator=g), torch.randn(24, generator=g), geo), 24),
                         (native.Depthwise(torch.randn(3, 3, 16, generator=g), None, geo, (0.0, 6.0)), 16)):
        add = torch.randn(1, 9, 9, cout, generator=g)
        want = kernel.run(x, add)
        other = add.clone()
        got = kernel.run_over(x, other)
        assert got.data_ptr() == other.data_ptr() and torch.equal(got, want)
        strided = torch.randn(1, 9, 9, 2 * cout, generator=g)[..., ::2]  # not one block: written fresh
        got = kernel.run_over(x, strided)
        assert got.data_ptr() != strided.data_ptr() and torch.equal(got, kernel.run(x, strided.contiguous()))


class _Residual(nn.Module):
    """ResNet blocks' tails (3x3 and 1x1 convolutions whose output a residual Add takes) and an encoder's
    FullyConnected + residual."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 1)
        self.b1, self.b2 = nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.c1, self.c2 = nn.Conv2d(16, 24, 1), nn.Conv2d(24, 16, 1)
        self.f1, self.f2 = nn.Linear(16, 32), nn.Linear(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = torch.relu(self.a(x))
        r = torch.relu(self.b2(self.b1(r)) + r)
        r = torch.relu(self.c2(self.c1(r)) + r)
        t = r.mean((2, 3))
        return self.f2(self.f1(t)) + t


@pytest.mark.parametrize("native_kernels", [True, False])
def test_plans_write_over_residuals_with_the_bits_of_fresh_outputs(native_kernels: bool, tmp_path, monkeypatch) -> None:
    import openqnn

    if native_kernels and native.library() is None:
        pytest.skip("no C compiler: the native kernels are not built here")
    torch.manual_seed(0)
    model = _Residual().eval()
    x = torch.randn(1, 3, 12, 12)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    graph = openqnn.convert(path)
    if not native_kernels:
        monkeypatch.setattr(native, "library", lambda: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (on several threads a plan with oneDNN convolutions keeps oneDNN throughout)
    try:
        plan = Plan(graph)
    finally:
        torch.set_num_threads(threads)
    overs = [c for c in plan._exec.calls if c.over is not None]
    assert len(overs) == (3 if native_kernels else 2)  # (without native kernels FullyConnected has no ``over``)
    taken: list[str] = []
    for c in overs:
        object.__setattr__(c, "over", lambda *xs, _f=c.over, _n=c.node: (taken.append(_n), _f(*xs))[1])
    feeds = {"x": x.numpy()}
    got = plan.run(feeds)["y"]
    assert len(taken) == len(overs)
    monkeypatch.setattr(executor, "_sole", lambda value: False)
    assert np.array_equal(plan.run(feeds)["y"], got)
    with torch.no_grad():
        want = model(x).numpy()
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, float(np.abs(want).max()))
