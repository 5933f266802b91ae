"""The PyTorch frontend: modules, TorchScript and .pt2 files, names, dtypes, the CLI and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import openqnn
from openqnn.cli import pytorch_converter


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6())
        self.fc = nn.Linear(8, 5)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(image)))
        y = self.layer1(y) + y
        return self.fc(y.mean((2, 3)))


def _net() -> SmallNet:
    torch.manual_seed(0)
    net = SmallNet().eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so folding them matters
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 2.0)
    return net


def _run(graph_or_path: object, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return openqnn.Session(graph_or_path, backend="cpu").run(feeds)  # type: ignore[arg-type]


def test_module_converts_with_state_dict_names_and_matches() -> None:
    net, x = _net(), torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    graph = openqnn.convert(net, {"input": (2, 3, 12, 12)})
    assert graph.inputs == ["input"] and graph.outputs == ["output"]
    statics = {t.name for t in graph.static_tensors()}
    assert {"conv1.weight", "layer1.0.weight", "fc.weight", "fc.bias"} <= statics, statics
    assert graph.metadata["frontend"] == "pytorch"
    out = _run(graph, {"input": x.numpy()})["output"]
    np.testing.assert_allclose(out, net(x).detach().numpy(), rtol=1e-3, atol=1e-5)


def test_example_inputs_name_inputs_after_forward_arguments() -> None:
    net, x = _net(), torch.randn(1, 3, 8, 8)
    graph = openqnn.convert(net, example_inputs=x)
    assert graph.inputs == ["image"]
    assert graph.input_tensors()[0].shape == (1, 3, 8, 8)


class TwoInOut(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a * b + 1.0, torch.tanh(a - b)


def test_several_inputs_and_outputs_are_named_in_order() -> None:
    a, b = torch.randn(1, 6), torch.randn(1, 6)
    graph = openqnn.convert(TwoInOut(), {"left": (1, 6), "right": (1, 6)})
    assert graph.inputs == ["left", "right"] and graph.outputs == ["output_0", "output_1"]
    out = _run(graph, {"left": a.numpy(), "right": b.numpy()})
    ref = TwoInOut()(a, b)
    np.testing.assert_allclose(out["output_0"], ref[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["output_1"], ref[1].numpy(), rtol=1e-5, atol=1e-6)


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.proj = nn.Linear(16, 4)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embed(input_ids))


def test_input_dtype_gives_integer_token_inputs() -> None:
    torch.manual_seed(0)
    net, ids = Tokens().eval(), torch.randint(0, 50, (1, 7))
    graph = openqnn.convert(net, {"input_ids": (1, 7)}, input_dtypes={"input_ids": "int64"})
    assert graph.input_tensors()[0].dtype.name in ("INT_64", "INT_32")
    assert "embed.weight" in {t.name for t in graph.static_tensors()}
    out = _run(graph, {"input_ids": ids.numpy()})["output"]
    np.testing.assert_allclose(out, net(ids).detach().numpy(), rtol=1e-4, atol=1e-6)


def test_exported_program_object_and_pt2_file(tmp_path) -> None:
    net, x = _net(), torch.randn(1, 3, 10, 10)
    ep = torch.export.export(net, (x,))
    ref = net(x).detach().numpy()
    graph = openqnn.convert(ep)  # its own example inputs give the shapes
    assert graph.inputs == ["image"]
    np.testing.assert_allclose(_run(graph, {"image": x.numpy()})["output"], ref, rtol=1e-3, atol=1e-5)
    path = tmp_path / "net.pt2"
    torch.export.save(ep, path)
    graph = openqnn.convert(path, {"input": (1, 3, 10, 10)})
    assert graph.inputs == ["input"] and graph.name == "net"
    np.testing.assert_allclose(_run(graph, {"input": x.numpy()})["output"], ref, rtol=1e-3, atol=1e-5)


def test_cli_converts_torchscript_file(tmp_path, capsys) -> None:
    net, x = _net(), torch.randn(1, 3, 12, 12)
    pt = tmp_path / "net.pt"
    torch.jit.save(torch.jit.trace(net, (x,)), str(pt))
    rc = pytorch_converter.main(["--input_network", str(pt), "--input_dim", "data", "1,3,12,12",
                                 "--output_path", str(tmp_path / "out" / "net.cpp")])
    assert rc == 0, capsys.readouterr().err
    written = capsys.readouterr().out.split()
    assert [p.split("/")[-1] for p in written] == ["net.cpp", "net_net.json", "net.bin"]
    graph = openqnn.load(tmp_path / "out" / "net_net.json")
    assert graph.metadata["converter_command"].startswith("qnn-pytorch-converter --input_network")
    assert "conv1.weight" in {t.name for t in graph.static_tensors()}
    out = _run(tmp_path / "out" / "net_net.json", {"data": x.numpy()})["output"]
    np.testing.assert_allclose(out, net(x).detach().numpy(), rtol=1e-3, atol=1e-5)


def test_cli_requires_input_dim(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        pytorch_converter.main(["--input_network", str(tmp_path / "net.pt")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--input_dim" in err and "required" in err


def test_cli_quantization_overrides_name_parameters(tmp_path, capsys) -> None:
    """Overrides refer to the module's parameter names, and the shared quantization flags work."""
    net = _net()
    pt2 = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(net, (torch.randn(1, 3, 8, 8),)), pt2)
    rng = np.random.default_rng(0)
    raws = []
    for i in range(3):
        raw = tmp_path / f"in{i}.raw"
        rng.standard_normal((1, 3, 8, 8)).astype(np.float32).tofile(raw)
        raws.append(str(raw))
    (tmp_path / "list.txt").write_text("\n".join(raws) + "\n")
    overrides = {"activation_encodings": {},
                 "param_encodings": {"fc.weight": [{"bitwidth": 8, "min": -1.0, "max": 1.0, "is_symmetric": "True"}]}}
    (tmp_path / "ov.json").write_text(json.dumps(overrides))
    rc = pytorch_converter.main(["-i", str(pt2), "-d", "x", "1,3,8,8", "--input_list", str(tmp_path / "list.txt"),
                                 "--quantization_overrides", str(tmp_path / "ov.json"), "--act_bitwidth", "16",
                                 "-o", str(tmp_path / "q.cpp")])
    assert rc == 0, capsys.readouterr().err
    graph = openqnn.load(tmp_path / "q_net.json")
    enc = graph.tensors["fc.weight"].encoding
    assert enc is not None and enc.bitwidth == 8
    assert float(np.max(enc.scale)) == pytest.approx(1.0 / 127, rel=1e-2)
    assert graph.tensors["input" if "input" in graph.tensors else "x"].encoding.bitwidth == 16


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # control flow on the data: torch.export cannot trace it
            return x * 2
        return x


def test_export_failure_is_one_line_with_the_exporters_reason() -> None:
    with pytest.raises(openqnn.ConversionError) as e:
        openqnn.convert(DataDependent(), {"x": (1, 4)})
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("DataDependent model: PyTorch could not export it (")


class UsesDet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.det(self.head(x)).unsqueeze(-1)


def test_unsupported_op_names_layer_type_file_and_supported_list(tmp_path, capsys) -> None:
    pt2 = tmp_path / "det.pt2"
    torch.export.save(torch.export.export(UsesDet(), (torch.randn(2, 3, 3),)), pt2)
    with pytest.raises(openqnn.UnsupportedOpError) as e:
        openqnn.convert(pt2, {"x": (2, 3, 3)})
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{pt2}: layer '(the top module)'") and "linalg_det" in msg, msg
    assert "op Det" in msg and "supported ops: Abs" in msg
    rc = pytorch_converter.main(["-i", str(pt2), "-d", "x", "2,3,3", "--dry_run"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: {pt2}: layer") and err.count("\n") == 1


def test_pickled_module_is_refused(tmp_path) -> None:
    path = tmp_path / "net.pth"
    torch.save(_net().state_dict(), path)
    with pytest.raises(openqnn.InvalidModelError, match=r"net\.pth: not a TorchScript archive .*never torch\.save"):
        openqnn.convert(path, {"input": (1, 3, 8, 8)})
    with pytest.raises(openqnn.InvalidModelError, match="no such PyTorch model file"):
        openqnn.convert(tmp_path / "missing.pt", {"input": (1, 3, 8, 8)})


def test_module_without_inputs_asks_for_them() -> None:
    with pytest.raises(openqnn.ConversionError, match="--input_dim NAME DIMS"):
        openqnn.convert(_net())
    with pytest.raises(openqnn.ConversionError, match="--input_dtype names y"):
        openqnn.convert(_net(), {"x": (1, 3, 8, 8)}, input_dtypes={"y": "int64"})
