"""The htp backend on whole models: accuracy, agreement with the cpu simulation, determinism,
arch checks and the command line."""

from __future__ import annotations

import ctypes
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import openqnn
from openqnn.backends import native as shared_native
from openqnn.backends.htp import HtpBackend, native
from openqnn.runtime.config import BackendConfig, HtpConfig
from quantization import bert_data as bd
from quantization.digits import digits_split, train_digits_cnn


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("htp_digits")
    path = root / "digits.onnx"
    torch.set_num_threads(1)
    train_digits_cnn(path)
    xtr, _, xte, yte = digits_split()
    graph = openqnn.convert(path, input_dims={"image": (1, 1, 8, 8)})
    calib = [{"image": xtr[i:i + 1]} for i in range(100)]
    q = openqnn.quantize(graph, calib, openqnn.QuantizerConfig(use_per_channel_quantization=True))
    return {"root": root, "onnx": path, "graph": graph, "q": q, "x": xte, "y": yte, "calib_x": xtr[:100]}


def _top1(run, xs: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.array([int(np.argmax(run({"image": xs[i:i + 1]})["logits"])) for i in range(len(xs))])


def test_digits_w8a8_accuracy_and_agreement(digits: dict) -> None:
    htp = HtpBackend().prepare(digits["q"])
    assert htp.exe.fallbacks == [], htp.exe.fallbacks  # every node runs as integers
    fp32 = _top1(openqnn.Session(digits["graph"]).run, digits["x"])
    sim = _top1(openqnn.Session(digits["q"]).run, digits["x"])
    ours = _top1(htp.run, digits["x"])
    acc = {k: float(np.mean(v == digits["y"])) * 100 for k, v in (("fp32", fp32), ("sim", sim), ("htp", ours))}
    agree = float(np.mean(ours == sim)) * 100
    print(f"\ndigits W8A8 per-channel: fp32 {acc['fp32']:.2f}%, cpu simulation {acc['sim']:.2f}%, "
          f"htp {acc['htp']:.2f}%, htp/simulation top-1 agreement {agree:.2f}%")
    assert acc["htp"] >= acc["fp32"] - 0.5
    assert agree >= 99.5


def test_fast_path_equals_reference_path_on_a_model(digits: dict) -> None:
    fast = HtpBackend().prepare(digits["q"])
    ref = HtpBackend(path="reference").prepare(digits["q"])
    for i in range(12):
        feeds = {"image": digits["x"][i:i + 1]}
        a = fast.run(feeds, native_outputs=True)["logits"]
        b = ref.run(feeds, native_outputs=True)["logits"]
        assert a.dtype == np.uint8 and np.array_equal(a, b)


def test_native_outputs_identical_across_thread_counts(digits: dict) -> None:
    """The same bits on 1, 2 and 3 threads (PyTorch's and the C kernels' pool), with the C kernels
    splitting every product among their threads however small (where they are built)."""
    feeds = [{"image": digits["x"][i:i + 8].reshape(8, 1, 8, 8)[:1]} for i in range(0, 64, 8)]
    outs = {}
    before = torch.get_num_threads()
    lib = native.library()
    macs = ctypes.c_double.in_dll(lib, "openqnn_parallel_macs") if lib is not None else None
    saved = macs.value if macs is not None else 0.0
    try:
        if macs is not None:
            macs.value = 0.0
        for threads in (1, 2, 3):
            exe = HtpBackend(num_threads=threads).prepare(digits["q"])
            outs[threads] = b"".join(exe.run(f, native_outputs=True)["logits"].tobytes() for f in feeds)
            # a run gives the C pool PyTorch's count and puts PyTorch's back (native.threads_to_the_pool)
            assert torch.get_num_threads() == threads
            if lib is not None:
                assert shared_native.pool_threads() == threads
    finally:
        torch.set_num_threads(before)
        if macs is not None:
            macs.value = saved
    assert outs[1] == outs[2] == outs[3]


def test_native_inputs_round_trip(digits: dict) -> None:
    exe = HtpBackend().prepare(digits["q"])
    enc = digits["q"].tensors["image"].encoding
    x = digits["x"][:1]
    q = np.clip(np.round(x.astype(np.float64) / enc.scale[0]) - enc.offset[0], 0, 255).astype(np.uint8)
    a = exe.run({"image": x}, native_outputs=True)["logits"]
    b = exe.run({"image": q}, native_inputs=True, native_outputs=True)["logits"]
    assert np.array_equal(a, b)


def test_session_native_outputs(digits: dict) -> None:
    s = openqnn.Session(digits["q"], backend="libQnnHtp.so")
    out = s.run({"image": digits["x"][:1]}, native_outputs=True)["logits"]
    assert out.dtype == np.uint8
    with pytest.raises(openqnn.InvalidConfigError, match="htp"):
        openqnn.Session(digits["q"], backend="cpu").run({"image": digits["x"][:1]}, native_outputs=True)


def test_arch_checks(digits: dict) -> None:
    w16 = openqnn.quantize(digits["graph"], [{"image": x[None]} for x in digits["calib_x"][:10]],
                           openqnn.QuantizerConfig(weights_bitwidth=16))
    with pytest.raises(openqnn.InvalidConfigError, match=r"16-bit.*v73"):
        openqnn.Session(w16, backend="htp", config=BackendConfig(htp=HtpConfig(dsp_arch="v69")))
    openqnn.Session(w16, backend="htp", config=BackendConfig(htp=HtpConfig(dsp_arch="v73")))
    w4 = openqnn.quantize(digits["graph"], [{"image": x[None]} for x in digits["calib_x"][:10]],
                          openqnn.QuantizerConfig(weights_bitwidth=4))
    with pytest.raises(openqnn.InvalidConfigError, match="4-bit"):
        openqnn.Session(w4, backend="htp", config=BackendConfig(htp=HtpConfig(soc_model=36)))
    with pytest.raises(openqnn.InvalidConfigError, match="contradicts"):
        HtpBackend(HtpConfig(dsp_arch="v75", soc_model=43))
    with pytest.raises(openqnn.InvalidConfigError, match="vtcm_mb"):
        HtpBackend(HtpConfig(dsp_arch="v68", vtcm_mb=8))


def test_float_model_needs_quantization_or_fp16(digits: dict) -> None:
    with pytest.raises(openqnn.InvalidConfigError, match="--input_list"):
        openqnn.Session(digits["graph"], backend="htp")
    s = openqnn.Session(digits["graph"], backend="htp", config=BackendConfig(htp=HtpConfig(fp16_relaxed_precision=True)))
    x = {"image": digits["x"][:4].reshape(4, 1, 8, 8)[:1]}
    np.testing.assert_allclose(s.run(x)["logits"], openqnn.Session(digits["graph"]).run(x)["logits"], atol=5e-2)
    with pytest.raises(openqnn.InvalidConfigError, match="v69"):
        openqnn.Session(digits["graph"], backend="htp",
                        config=BackendConfig(htp=HtpConfig(fp16_relaxed_precision=True, dsp_arch="v68")))


def test_qnn_net_run_on_htp_with_native_files(digits: dict, tmp_path: Path) -> None:
    from openqnn.cli import net_run, onnx_converter

    xtr = digits["calib_x"]
    for i in range(10):
        xtr[i:i + 1].tofile(tmp_path / f"c{i}.raw")
    (tmp_path / "cal.txt").write_text("".join(f"c{i}.raw\n" for i in range(10)))
    assert onnx_converter.main(["-i", str(digits["onnx"]), "-o", str(tmp_path / "m.cpp"), "--input_list",
                                str(tmp_path / "cal.txt"), "--use_per_channel_quantization"]) == 0
    assert net_run.main(["--model", str(tmp_path / "m_net.json"), "--backend", "libQnnHtp.so", "--input_list",
                         str(tmp_path / "cal.txt"), "--output_dir", str(tmp_path / "out"),
                         "--use_native_output_files"]) == 0
    native = np.fromfile(tmp_path / "out" / "Result_0" / "logits_native.raw", dtype=np.uint8)
    assert native.size == 10
    assert net_run.main(["--model", str(tmp_path / "m_net.json"), "--backend", "htp", "--input_list",
                         str(tmp_path / "cal.txt"), "--output_dir", str(tmp_path / "out_f")]) == 0
    g = openqnn.load(tmp_path / "m_net.json")
    enc = g.tensors["logits"].encoding
    floats = np.fromfile(tmp_path / "out_f" / "Result_0" / "logits.raw", dtype=np.float32)
    np.testing.assert_allclose(floats, (native.astype(np.float64) + enc.offset[0]) * enc.scale[0], rtol=1e-6)


def test_bert_w8a16_on_htp(tmp_path: Path) -> None:
    model = bd.realistic_bert(seed=0, score_std=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_path = bd.export_bert(tmp_path, model)
    calibration, test = bd.token_batches(seed=1, sequences=16), bd.token_batches(seed=2, sequences=16)
    graph = openqnn.convert(onnx_path, input_dims={"input_ids": (bd.BATCH, bd.SEQ), "attention_mask": (bd.BATCH, bd.SEQ)})
    q = openqnn.quantize(graph, calibration, openqnn.QuantizerConfig(act_bitwidth=16, use_per_channel_quantization=True,
                                                                    use_per_row_quantization=True))
    exe = HtpBackend().prepare(q)
    ref = bd.run_batches(openqnn.Session(graph).run, test)
    ours = bd.run_batches(exe.run, test)
    cos = bd.cosines(ours, ref, bd.concat(test, "attention_mask"))
    print(f"\nBERT-style encoder W8A16 on htp: cosine to fp32 min {cos.min():.4f} mean {cos.mean():.4f}; "
          f"{len(exe.exe.fallbacks)} node(s) on cpu fallback: "
          f"{sorted({f.op_type for f in exe.exe.fallbacks})}")
    assert cos.min() >= 0.99


def test_fallback_node_with_a_static_operand() -> None:
    """A node the htp kernels refuse runs on cpu with its static operands bound, as the simulation sees them."""
    from openqnn.backends.htp.kernels import HTP_KERNELS
    from openqnn.ir import DType, Graph, Tensor, TensorKind
    from openqnn.ops.build import emit

    g = Graph("g")
    g.add_tensor(Tensor("x", (2, 4), DType.FLOAT_32, TensorKind.APP_WRITE))
    g.inputs.append("x")
    c = g.add_constant("c", np.full((2, 4), 0.25, np.float32))
    (y,) = emit(g, "ElementWiseMaximum", ["x", c.name])
    (z,) = emit(g, "ElementWiseSin", [y], outputs=["out"])
    g.tensors[z].kind = TensorKind.APP_READ
    g.outputs.append(z)
    rng = np.random.default_rng(0)
    q = openqnn.quantize(g, [{"x": rng.standard_normal((2, 4)).astype(np.float32)} for _ in range(4)])
    kernel = HTP_KERNELS.pop("ElementWiseMaximum")
    try:
        exe = HtpBackend().prepare(q)
        assert [f.op_type for f in exe.exe.fallbacks] == ["ElementWiseMaximum"]
        x = {"x": rng.standard_normal((2, 4)).astype(np.float32)}
        out = exe.run(x)["out"]
    finally:
        HTP_KERNELS["ElementWiseMaximum"] = kernel
    sim = openqnn.Session(q).run(x)["out"]
    step = q.tensors["out"].encoding.scale[0]
    np.testing.assert_allclose(out, sim, atol=1.01 * step)
