"""The guide's quick start and its steps 1-3, run as written, one after the other, in one folder.

The guide (../shared/seeds/, "Hurtigstartguide" to "Utgangsstruktur") leaves three files to the reader;
they are made here: its SimpleModel exported by its own Python block (``simple_model.onnx``, and the same
file as step 1's ``model.onnx``), ``quantization_config.json`` from its JSON block (less the
``// quantization_config.json`` title line, which is not JSON) and ``input_data.txt``, an input list of
random raw inputs of 1x3x224x224. Every shell block then runs unchanged, with one exception:

- step 2 builds for ``-t aarch64-android``. Where no Android NDK is installed (``ANDROID_NDK_ROOT`` not
  set) the command as written must fail with the one-line NDK error (exit status 2), and the same command
  then runs with ``-t x86_64-linux-clang``, so that step 3 has a ``model_optimized.so`` to load on this
  machine. Where the NDK is there, the command runs as written and must give an aarch64 library; the
  x86_64 build for step 3 follows it, as on a machine without the NDK.

After step 3, ``qnn-net-run --retrieve_context context_binaries/htp_context.bin`` runs the context over the
inputs, and its outputs must follow the fp32 PyTorch model's (cosine >= 0.98).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_guide_blocks import SEEDS, blocks, run_bash, run_python

N_INPUTS = 3

pytestmark = pytest.mark.skipif(not any(SEEDS.glob("*.txt")), reason=f"the guide is not beside this checkout ({SEEDS})")


def _guide() -> str:
    texts = [f.read_text() for f in sorted(SEEDS.glob("*.txt"))]
    for kind in ("bash", "json", "python"):
        assert all(blocks(t, kind) == blocks(texts[0], kind) for t in texts), f"the translations differ in {kind}"
    return texts[0]


def _block(text: str, kind: str, key: str) -> str:
    (found,) = [b for b in blocks(text, kind) if key in b]
    return found


def _android_ndk() -> bool:
    from openqnn.errors import LibraryBuildError
    from openqnn.modellib.toolchain import find_toolchain

    try:
        find_toolchain("aarch64-android")
    except LibraryBuildError:
        return False
    return True


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every step of the flow in order; returns what the tests look at."""
    text = _guide()
    work = tmp_path_factory.mktemp("guide_flow")
    export = next(b for b in blocks(text, "python") if "torch.onnx.export" in b)
    ns: dict[str, object] = {}
    cwd = os.getcwd()
    os.chdir(work)
    try:
        run_python(export, ns)                                   # the guide's SimpleModel -> simple_model.onnx
    finally:
        os.chdir(cwd)
    shutil.copy(work / "simple_model.onnx", work / "model.onnx")  # step 1's model: the same network
    config = _block(text, "json", "param_encodings")
    (work / "quantization_config.json").write_text(
        "\n".join(ln for ln in config.splitlines() if not ln.lstrip().startswith("//")))
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, 3, 224, 224)).astype(np.float32) for _ in range(N_INPUTS)]
    for i, x in enumerate(xs):
        x.tofile(work / f"input_{i}.raw")
    (work / "input_data.txt").write_text("".join(f"input_{i}.raw\n" for i in range(N_INPUTS)))

    # quick start: convert, then the model library
    run_bash(_block(text, "bash", "--input_network simple_model.onnx"), work)
    run_bash(_block(text, "bash", "-o simple_model_qnn.so"), work)
    # step 1: conversion with the overrides, for hexagon
    run_bash(_block(text, "bash", "--target_device hexagon"), work)
    # step 2: the library for aarch64-android, with the placement over htp,gpu,cpu
    step2 = _block(text, "bash", "-t aarch64-android")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    written = subprocess.run(["bash", "-euo", "pipefail", "-c", step2], cwd=work, env=env, capture_output=True,
                             text=True, timeout=300)
    # what step 2 as written left (moved aside: step 3 needs this machine's library under its name)
    left = work / "model_optimized.so"
    android = left.rename(work / "model_optimized.aarch64-android.so") if left.exists() else None
    host_build = run_bash(step2.replace("-t aarch64-android", "-t x86_64-linux-clang"), work)
    # step 3: the htp context, calibrated from input_data.txt
    run_bash(_block(text, "bash", "--backend libQnnHtp.so"), work)
    run_bash("qnn-net-run --retrieve_context context_binaries/htp_context.bin --input_list input_data.txt "
             "--output_dir output", work)
    return {"work": work, "model": ns["model"], "xs": xs, "step2": written, "android": android,
            "host_build": host_build}


def test_quick_start_and_step1_write_their_files(flow: dict[str, object]) -> None:
    work = flow["work"]
    assert isinstance(work, Path)
    for f in ("simple_model.cpp", "simple_model_net.json", "simple_model.bin", "simple_model_qnn.so",
              "model_quantized.cpp", "model_quantized_net.json", "model_quantized.bin"):
        assert (work / f).is_file(), f
    net = json.loads((work / "model_quantized_net.json").read_text())
    assert "hexagon" in json.dumps(net)  # --target_device is recorded in the model


def test_step2_as_written(flow: dict[str, object]) -> None:
    """aarch64-android as written: an aarch64 library with the NDK, else the one-line NDK error (exit 2)."""
    from openqnn.modellib.elf import read_elf

    step2 = flow["step2"]
    android = flow["android"]
    assert isinstance(step2, subprocess.CompletedProcess)
    if _android_ndk():
        assert step2.returncode == 0, step2.stderr
        assert isinstance(android, Path) and read_elf(android).machine == "aarch64"
    else:
        lines = step2.stderr.strip().splitlines()
        assert step2.returncode == 2 and len(lines) == 1, step2.stderr
        assert lines[0].startswith("error:") and "ANDROID_NDK_ROOT" in lines[0] and "Android NDK" in lines[0]
        assert android is None and step2.stdout == ""  # nothing written
    # the x86_64 build of the same command prints where every node runs, gpu included
    out = flow["host_build"]
    assert isinstance(out, str) and "model_optimized.so" in out and "gpu: not available" in out


def test_step3_context_runs_and_follows_pytorch(flow: dict[str, object]) -> None:
    import torch

    work, model, xs = flow["work"], flow["model"], flow["xs"]
    assert isinstance(work, Path) and isinstance(xs, list)
    assert sorted(p.name for p in (work / "context_binaries").iterdir()) == [
        "htp_context.bin", "input_specs.json", "quantization_config.json"]
    for i, x in enumerate(xs):
        got = np.fromfile(work / "output" / f"Result_{i}" / "output.raw", np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy().ravel()  # type: ignore[operator]
        assert got.shape == ref.shape == (10,)
        cos = float(got @ ref / (np.linalg.norm(got) * np.linalg.norm(ref)))
        assert cos >= 0.98, (i, cos)


def test_step3_context_runs_on_htp(flow: dict[str, object]) -> None:
    """What step 3 is for: the context's nodes run on htp, calibrated from input_data.txt."""
    from openqnn.runtime.context import open_context, step_summary

    work = flow["work"]
    assert isinstance(work, Path)
    (graph,) = open_context(work / "context_binaries" / "htp_context.bin").graphs.values()
    assert step_summary(graph)["fallbacks"] == []
