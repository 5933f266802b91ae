"""Post-training quantization of a digits CNN through the command line, with accuracy budgets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from openqnn.cli import net_run, onnx_converter
from quantization.digits import digits_split, train_digits_cnn


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("digits")
    onnx_path = root / "digits.onnx"
    train_digits_cnn(onnx_path)
    xtr, _, xte, yte = digits_split()
    cal = root / "cal"
    cal.mkdir()
    for i in range(100):  # calibration: 100 training images
        xtr[i:i + 1].tofile(cal / f"c{i}.raw")
    (root / "cal.txt").write_text("".join(f"cal/c{i}.raw\n" for i in range(100)))
    test = root / "test"
    test.mkdir()
    for i in range(len(xte)):
        xte[i:i + 1].tofile(test / f"t{i}.raw")
    (root / "test.txt").write_text("".join(f"test/t{i}.raw\n" for i in range(len(xte))))
    return {"root": root, "onnx": onnx_path, "y": yte}


def _accuracy(work: dict, name: str, *flags: str) -> tuple[float, Path]:
    root = work["root"]
    stem = root / name
    rc = onnx_converter.main(["-i", str(work["onnx"]), "-o", f"{stem}.cpp", *flags])
    assert rc == 0
    out = root / f"out_{name}"
    assert net_run.main(["--model", f"{stem}_net.json", "--input_list", str(root / "test.txt"),
                         "--output_dir", str(out)]) == 0
    preds = [np.fromfile(out / f"Result_{i}" / "logits.raw", np.float32).argmax() for i in range(len(work["y"]))]
    acc = float(np.mean(np.array(preds) == work["y"])) * 100
    print(f"digits {name}: {acc:.2f}% top-1")
    return acc, stem


@pytest.fixture(scope="module")
def fp32(work: dict) -> float:
    acc, _ = _accuracy(work, "fp32")
    assert acc > 90, acc  # the float model has learned the task
    return acc


def test_w8a8_per_channel(work: dict, fp32: float) -> None:
    acc, stem = _accuracy(work, "w8a8", "--input_list", str(work["root"] / "cal.txt"), "--use_per_channel_quantization")
    assert acc >= fp32 - 0.5, (acc, fp32)
    enc = json.loads(Path(f"{stem}_encodings.json").read_text())
    assert enc["version"] == "1.0.0"
    weights = [e for e in enc["param_encodings"] if e["enc_type"] == "PER_CHANNEL" and e["bw"] == 8]
    assert len(weights) == 3 and all(e["is_sym"] and set(e["offset"]) == {-128} for e in weights)  # the 3 convs
    biases = [e for e in enc["param_encodings"] if e["bw"] == 32]
    assert biases and all(set(e["offset"]) == {0} for e in biases)


def test_w8a16(work: dict, fp32: float) -> None:
    acc, _ = _accuracy(work, "w8a16", "--input_list", str(work["root"] / "cal.txt"), "--act_bitwidth", "16")
    assert acc >= fp32 - 0.3, (acc, fp32)


def test_w4a8_per_channel(work: dict, fp32: float) -> None:
    acc, _ = _accuracy(work, "w4a8", "--input_list", str(work["root"] / "cal.txt"), "--weights_bitwidth", "4",
                       "--use_per_channel_quantization")
    assert acc >= fp32 - 3.0, (acc, fp32)


def test_quantization_changes_outputs(work: dict, fp32: float) -> None:
    """The simulation really quantizes: W4 outputs differ from float outputs."""
    root = work["root"]
    a = np.fromfile(root / "out_fp32" / "Result_0" / "logits.raw", np.float32)
    _accuracy(work, "w4only", "--input_list", str(root / "cal.txt"), "--weights_bitwidth", "4")
    b = np.fromfile(root / "out_w4only" / "Result_0" / "logits.raw", np.float32)
    assert not np.allclose(a, b, atol=1e-4)
