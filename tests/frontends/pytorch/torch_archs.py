"""Real architectures with random weights (nothing is downloaded): torchvision's, timm's and transformers'.

torchvision and timm are ``dev`` extras; where one is missing its cases skip. A torchvision wheel built for
CUDA beside a CPU-only torch cannot load its compiled ops, and its import then fails registering fake kernels
for ``torchvision::nms``/``qnms``; :func:`torchvision` defines those two schemas (no kernels: no model here
calls them) so the pure-Python model definitions still import.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import pytest
import torch

_TV_LIB: list[torch.library.Library] = []


def torchvision() -> ModuleType:
    try:
        return importlib.import_module("torchvision")
    except ImportError:
        pytest.skip("torchvision is not installed: install the torchvision build matching your torch, then pip install 'openqnn[archs]'")
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    lib = torch.library.Library("torchvision", "FRAGMENT")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    _TV_LIB.append(lib)
    return importlib.import_module("torchvision")


def timm() -> ModuleType:
    torchvision()  # timm imports torchvision.ops
    return pytest.importorskip("timm")


def transformers() -> ModuleType:
    return pytest.importorskip("transformers")


@dataclass(frozen=True)
class Arch:
    """One architecture: its builder (random weights, eval mode) and an input shape it accepts."""

    id: str
    build: Callable[[], torch.nn.Module]
    shape: tuple[int, ...]
    kind: str  # "cnn" or "transformer"
    heavy: bool = False


def _tv(name: str, **kw: object) -> Callable[[], torch.nn.Module]:
    return lambda: getattr(torchvision().models, name)(weights=None, **kw)


def _timm(name: str, **kw: object) -> Callable[[], torch.nn.Module]:
    return lambda: timm().create_model(name, pretrained=False, **kw)


def _hf_vision(config: str, model: str, **kw: object) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        tf = transformers()
        inner = getattr(tf, model)(getattr(tf, config)(**kw))
        return _Logits(inner)

    return build


class _Logits(torch.nn.Module):
    """A transformers model's ``logits`` (its forward returns a ModelOutput)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.model = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def healthy(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights that keep the signal alive: BatchNorm statistics and affine terms that are not the
    identity (so folding them is checked), and no all-zero weights (torchvision's ViT zeroes its head)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.75)
            for p in m.parameters(recurse=False):
                if p.dim() > 1 and not p.any():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


# Light cases run in the default suite; heavy ones (seconds to tens of seconds each) with OPENQNN_HEAVY_ARCHS=1.
ARCHS = [
    # torchvision CNNs
    Arch("tv_resnet18", _tv("resnet18"), (1, 3, 64, 64), "cnn"),
    Arch("tv_mobilenet_v3_small", _tv("mobilenet_v3_small"), (1, 3, 64, 64), "cnn"),
    Arch("tv_squeezenet1_1", _tv("squeezenet1_1"), (1, 3, 64, 64), "cnn"),
    Arch("tv_shufflenet_v2_x0_5", _tv("shufflenet_v2_x0_5"), (1, 3, 64, 64), "cnn"),
    Arch("tv_efficientnet_b0", _tv("efficientnet_b0"), (1, 3, 64, 64), "cnn", heavy=True),
    Arch("tv_regnet_y_400mf", _tv("regnet_y_400mf"), (1, 3, 64, 64), "cnn", heavy=True),
    Arch("tv_mnasnet0_5", _tv("mnasnet0_5"), (1, 3, 64, 64), "cnn", heavy=True),
    Arch("tv_convnext_tiny", _tv("convnext_tiny"), (1, 3, 64, 64), "cnn", heavy=True),
    Arch("tv_densenet121", _tv("densenet121"), (1, 3, 64, 64), "cnn", heavy=True),
    # torchvision transformers
    Arch("tv_vit_b_16", _tv("vit_b_16", image_size=64), (1, 3, 64, 64), "transformer", heavy=True),
    Arch("tv_swin_t", _tv("swin_t"), (1, 3, 64, 64), "transformer", heavy=True),
    # timm
    Arch("timm_vit_tiny", _timm("vit_tiny_patch16_224", img_size=64), (1, 3, 64, 64), "transformer"),
    Arch("timm_convnext_atto", _timm("convnext_atto"), (1, 3, 64, 64), "cnn"),
    Arch("timm_resnet18", _timm("resnet18"), (1, 3, 64, 64), "cnn", heavy=True),
    Arch("timm_mobilenetv3_small_050", _timm("mobilenetv3_small_050"), (1, 3, 64, 64), "cnn", heavy=True),
    Arch("timm_efficientnet_b0", _timm("efficientnet_b0"), (1, 3, 64, 64), "cnn", heavy=True),
    Arch("timm_deit_tiny", _timm("deit_tiny_patch16_224", img_size=64), (1, 3, 64, 64), "transformer", heavy=True),
    Arch("timm_swin_tiny", _timm("swin_tiny_patch4_window7_224", img_size=64, window_size=4), (1, 3, 64, 64),
         "transformer", heavy=True),
    # transformers (small random configs)
    Arch("hf_vit", _hf_vision("ViTConfig", "ViTForImageClassification", image_size=32, patch_size=8, hidden_size=64,
                              num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, num_labels=10),
         (1, 3, 32, 32), "transformer"),
    Arch("hf_deit", _hf_vision("DeiTConfig", "DeiTForImageClassification", image_size=32, patch_size=8, hidden_size=64,
                               num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, num_labels=10),
         (1, 3, 32, 32), "transformer"),
    Arch("hf_resnet", _hf_vision("ResNetConfig", "ResNetForImageClassification", embedding_size=16,
                                 hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=10),
         (1, 3, 64, 64), "cnn"),
    Arch("hf_convnext", _hf_vision("ConvNextConfig", "ConvNextForImageClassification", hidden_sizes=[16, 32, 64, 128],
                                   depths=[1, 1, 1, 1], num_labels=10), (1, 3, 64, 64), "cnn"),
]
