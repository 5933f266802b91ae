"""A small CNN trained on scikit-learn's bundled digits (8x8 images), exported to ONNX."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0 - 0.5)[:, None]  # (n, 1, 8, 8)
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))
    cut = int(0.7 * len(x))
    return x[idx[:cut]], y[idx[:cut]], x[idx[cut:]], y[idx[cut:]]


def train_digits_cnn(path: Path) -> None:
    """Write the trained model to ``path`` (trained once per process: training is seeded)."""
    path.write_bytes(_trained_digits_onnx())


@functools.cache
def _trained_digits_onnx() -> bytes:
    import tempfile

    import torch
    from torch import nn

    torch.manual_seed(0)
    xtr, ytr, _, _ = digits_split()
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU6(),
        nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for _epoch in range(15):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[b]), yt[b]).backward()
            opt.step()
    model.eval()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "digits.onnx"
            torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), input_names=["image"],
                              output_names=["logits"], opset_version=13, dynamo=False)
            return path.read_bytes()
