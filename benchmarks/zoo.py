"""Model zoo shared by the end-to-end tests (tests/models) and the benchmarks.

PyTorch definitions written out here (no torchvision): MobileNetV2, ResNet-18/50 (torchvision
equivalent), a small BERT-style encoder with token ids and an attention mask, and the seed's
SimpleModel; plus :func:`export` writing any of them to ONNX with a dynamic batch axis.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MODELS",
    "BertEncoder",
    "MobileNetV2",
    "ModelSpec",
    "ResNet",
    "SimpleModel",
    "export",
    "make_inputs",
    "resnet18",
    "resnet50",
]


# ---------------------------------------------------------------------------------------------
# MobileNetV2


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's mobilenet_v2 (width 1.0): 52 convolutions, ReLU6, 10 residual adds."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0):
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        for t, c, n, s in self.SETTINGS:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBNReLU6(cin, self.last_channel, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last_channel, num_classes))
        _init_cnn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------------------------------------
# ResNet


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # torchvision v1.5: stride here
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, int, int, int],
                 num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        _init_cnn(self)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)


def _init_cnn(model: nn.Module) -> None:
    """Kaiming convs plus random BatchNorm statistics, so folding BN is really exercised."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.1, 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            # modest random affine and running statistics keep activations O(1) through deep nets
            nn.init.uniform_(m.weight, 0.5, 1.0)
            nn.init.uniform_(m.bias, -0.1, 0.1)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(1.0, 2.0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------
# Transformer encoder


class EncoderLayer(nn.Module):
    """Post-LN BERT layer: multi-head self-attention with an additive mask, GELU MLP."""

    def __init__(self, hidden: int, heads: int, ffn: int):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.proj = nn.Linear(hidden, hidden)
        self.ln1 = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, ffn)
        self.fc2 = nn.Linear(ffn, hidden)
        self.ln2 = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        q, k, v = (lin(x).reshape(b, s, self.heads, self.head_dim).transpose(1, 2)
                   for lin in (self.query, self.key, self.value))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + mask_bias
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, s, h)
        x = self.ln1(x + self.proj(ctx))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class BertEncoder(nn.Module):
    """Token + learned position embeddings, ``layers`` encoder layers, a pooled tanh head.

    Inputs: ``input_ids`` int64 [B, S] and ``attention_mask`` int64 [B, S] (1 keep, 0 pad); a
    padded key gets -10000 added to its attention score before the softmax.
    """

    def __init__(self, vocab: int = 1000, hidden: int = 128, layers: int = 4, heads: int = 4, max_len: int = 128):
        super().__init__()
        self.tok = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(max_len, hidden)
        self.ln = nn.LayerNorm(hidden)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, 4 * hidden) for _ in range(layers))
        self.pool = nn.Linear(hidden, hidden)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0, 0.05)
            if isinstance(m, nn.Linear):
                nn.init.uniform_(m.bias, -0.02, 0.02)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = input_ids.shape[1]
        pos = torch.arange(s, device=input_ids.device).unsqueeze(0)
        x = self.ln(self.tok(input_ids) + self.pos(pos))
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, mask_bias)
        return x, torch.tanh(self.pool(x[:, 0]))


# ---------------------------------------------------------------------------------------------
# The seed's model


class SimpleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.fc(x.view(x.size(0), -1))


# ---------------------------------------------------------------------------------------------
# Registry and export


def bert_base() -> BertEncoder:
    """The encoder at BERT-base's dimensions: hidden 768, 12 layers of 12 heads, FFN 3072, a 30522-token
    vocabulary (110M parameters; for the context benchmark, where a model's size decides what loading saves)."""
    return BertEncoder(vocab=30522, hidden=768, layers=12, heads=12, max_len=512)


class HFEncoder(nn.Module):
    """A Hugging Face ``transformers`` BERT at all-MiniLM-L6-v2's dimensions (hidden 384, 6 layers of 12 heads, FFN
    1536, a 30522-token vocabulary; random weights), exported as transformers exports it (its scaled dot-product
    attention, its mask arithmetic): the last hidden state. Needs ``transformers``."""

    def __init__(self) -> None:
        super().__init__()
        try:
            import transformers
        except ImportError:  # pragma: no cover - a dev extra
            raise SystemExit("benchmarks: the minilm model needs transformers (pip install transformers)") from None
        cfg = transformers.BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                      intermediate_size=1536, max_position_embeddings=512)
        self.bert = transformers.BertModel(cfg, add_pooling_layer=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[[], nn.Module]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    opset: int = 17
    image_size: int = 224  # CNNs: spatial size; the encoder: sequence length
    text: bool = False

    def build(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return self.factory().eval()


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("mobilenet_v2", MobileNetV2, ("input",), ("logits",)),
        ModelSpec("resnet18", resnet18, ("input",), ("logits",)),
        ModelSpec("resnet50", resnet50, ("input",), ("logits",)),
        ModelSpec("bert", BertEncoder, ("input_ids", "attention_mask"), ("hidden", "pooled"), image_size=64,
                  text=True),
        ModelSpec("bert_base", bert_base, ("input_ids", "attention_mask"), ("hidden", "pooled"), image_size=64,
                  text=True),
        ModelSpec("simple", SimpleModel, ("input",), ("output",), opset=11, image_size=32),
        ModelSpec("minilm", HFEncoder, ("input_ids", "attention_mask"), ("hidden",), image_size=128, text=True),
    )
}


def make_inputs(spec: ModelSpec, batch: int = 1, size: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for ``spec``; ``size`` overrides the spatial size / sequence length."""
    rng = np.random.default_rng(seed)
    n = size or spec.image_size
    if spec.text:
        ids = rng.integers(0, 1000, size=(batch, n), dtype=np.int64)
        mask = np.ones((batch, n), np.int64)
        for b in range(batch):  # row b keeps its first n - 4 * (b + 1) tokens (at least one)
            mask[b, max(1, n - 4 * (b + 1)):] = 0
        return {"input_ids": ids, "attention_mask": mask}
    return {"input": rng.standard_normal((batch, 3, n, n), dtype=np.float32)}


def export(spec: ModelSpec | str, out_dir: str | os.PathLike[str], size: int | None = None,
           model: nn.Module | None = None) -> Path:
    """Export ``spec`` (seeded weights) to ``out_dir/<name>.onnx`` with a dynamic batch axis."""
    if isinstance(spec, str):
        spec = MODELS[spec]
    model = model if model is not None else spec.build()
    feeds = make_inputs(spec, 1, size)
    args = tuple(torch.from_numpy(feeds[n]) for n in spec.input_names)
    path = Path(out_dir) / f"{spec.name}.onnx"
    dynamic = {n: {0: "batch"} for n in (*spec.input_names, *spec.output_names)}
    with torch.no_grad():
        torch.onnx.export(model, args, str(path), input_names=list(spec.input_names),
                          output_names=list(spec.output_names), opset_version=spec.opset,
                          dynamic_axes=dynamic, dynamo=False)
    return path
