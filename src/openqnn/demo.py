"""``openqnn demo``: the seed's quick start end to end, on a model the demo builds.

1. define the seed's SimpleModel in PyTorch and export it to ONNX (opset 11, dynamic batch)
2. qnn-onnx-converter --input_network simple_model.onnx --output_path simple_model.cpp --input_dim input 1,3,224,224
3. write a raw input and an input list, run qnn-net-run on the cpu backend
4. print the output and compare it with PyTorch's
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_simple_model():
    import torch
    from torch import nn

    class SimpleModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.relu(self.conv1(x))
            x = self.relu(self.conv2(x))
            x = self.pool(x)
            x = x.view(x.size(0), -1)
            return self.fc(x)

    torch.manual_seed(0)
    return SimpleModel().eval()


def export_simple_model(path: Path):
    import warnings

    import torch

    model = build_simple_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(path), export_params=True, opset_version=11,
                          do_constant_folding=True, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}}, dynamo=False)
    return model


def run_demo(workdir: str | Path) -> int:
    import torch

    from openqnn.cli import net_run, onnx_converter

    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    onnx_path = wd / "simple_model.onnx"
    print(f"[1/4] exporting the seed's SimpleModel to {onnx_path}")
    model = export_simple_model(onnx_path)
    cmd = ["--input_network", str(onnx_path), "--output_path", str(wd / "simple_model.cpp"),
           "--input_dim", "input", "1,3,224,224"]
    print("[2/4] qnn-onnx-converter " + " ".join(cmd))
    if onnx_converter.main(cmd):
        return 1
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    x.tofile(wd / "input.raw")
    (wd / "input_list.txt").write_text("input.raw\n")
    run = ["--model", str(wd / "simple_model_net.json"), "--backend", "libQnnCpu.so",
           "--input_list", str(wd / "input_list.txt"), "--output_dir", str(wd / "output")]
    print("[3/4] qnn-net-run " + " ".join(run))
    if net_run.main(run):
        return 1
    out = np.fromfile(wd / "output" / "Result_0" / "output.raw", dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy().reshape(-1)
    print(f"[4/4] output ({out.size} values): " + " ".join(f"{v:+.4f}" for v in out))
    print(f"      top-1 class {int(out.argmax())}; PyTorch says {int(ref.argmax())}; "
          f"max |difference| {float(np.abs(out - ref).max()):.2e}")
    return 0
