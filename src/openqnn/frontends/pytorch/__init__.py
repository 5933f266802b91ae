"""The PyTorch frontend: ``torch.nn.Module`` objects, TorchScript files (``.pt``/``.pth``) and
``ExportedProgram`` files (``.pt2``) -> IR graphs, through ``torch.export`` and PyTorch's ONNX exporter,
then the ONNX frontend. Parameters keep their ``state_dict`` names (``layer1.0.conv1.weight``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from openqnn.frontends.base import FrontendOptions, lazy_exports, register
from openqnn.ir.graph import Graph

if TYPE_CHECKING:
    from openqnn.frontends.pytorch.exporter import convert_pytorch, export_onnx

__all__ = ["PyTorchFrontend", "convert_pytorch", "export_onnx"]


class PyTorchFrontend:
    """``qnn-pytorch-converter``'s frontend (torch is a core dependency: no extra)."""

    name: str = "pytorch"
    suffixes: tuple[str, ...] = (".pt", ".pth", ".pt2", ".torchscript")
    object_types: tuple[str, ...] = ("torch.nn.Module", "torch.export.ExportedProgram")
    extra: str | None = None

    def load(self, source: object, options: FrontendOptions) -> Graph:
        from openqnn.frontends.pytorch.exporter import convert_pytorch

        return convert_pytorch(source, options)


register(PyTorchFrontend())


# the exporter imports torch.onnx: only when asked for
__getattr__ = lazy_exports(__name__, {"convert_pytorch": "exporter", "export_onnx": "exporter"})
