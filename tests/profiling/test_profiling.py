"""Profiles, the profile viewer, throughput, the platform validator, the accuracy debugger and the guide's
profiling classes, on a small quantized conv net (conftest.py) on htp and cpu."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from openqnn.cli import accuracy_debugger, net_run, platform_validator, profile_viewer
from openqnn.profiling import read_profile

RUNS = 6


def _quiet(main, argv: list[str]) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module", params=["htp", "cpu"])
def profiled(request: pytest.FixtureRequest, profnet: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp(f"run_{request.param}")
    rc, printed, err = _quiet(net_run.main, ["--model", str(profnet["q8"]), "--backend", request.param,
                                             "--input_list", str(profnet["list"]), "--output_dir", str(out),
                                             "--num_inferences", str(RUNS), "--profiling_level", "detailed"])
    assert rc == 0, err
    assert "latency (ms): avg" in printed and "p95" in printed and "p99" in printed and "throughput" in printed
    return request.param, out


def test_profile_log_holds_phases_inferences_and_nodes(profiled: tuple[str, Path]) -> None:
    backend, out = profiled
    log = read_profile(out / "qnn-profiling-data_0.log")
    assert log.backend == backend and log.level == "detailed"
    assert {"init", "prepare", "deinit"} <= {e.name for e in log.events}
    assert len(log.inferences) == RUNS and all(i.us > 0 and i.rss_bytes > 0 for i in log.inferences)
    assert len(log.executions) == RUNS * len(log.nodes)
    convs = [n for n in log.nodes.values() if n.op_type == "Conv2d"]
    assert len(convs) == 4 and all(n.ran_on == backend for n in convs)
    # conv2: 24x24x16 outputs, 3x3x16 weights each
    assert log.nodes["conv2"].macs == 24 * 24 * 16 * 9 * 16
    assert log.peak_rss_bytes > 0 and log.planned_arena_bytes >= 24 * 24 * 16
    if backend == "htp":
        assert log.arch == "v73" and log.vtcm_bytes == 8 * 2**20
        assert all(n.vtcm_bytes > 0 for n in convs)


def test_viewer_writes_summary_csv_trace_and_html(profiled: tuple[str, Path]) -> None:
    _, out = profiled
    logf = out / "qnn-profiling-data_0.log"
    rc, printed, err = _quiet(profile_viewer.main, ["--input_log", str(logf), "--output", str(out / "nodes.csv"),
                                                    "--html", str(out / "report.html")])
    assert rc == 0, err
    assert "Execute Stats" in printed and "Inferences per second" in printed and "conv2" in printed
    rows = list(csv.DictReader(open(out / "nodes.csv")))
    times = [float(r["avg_us"]) for r in rows]
    assert times == sorted(times, reverse=True) and {r["node"] for r in rows} >= {"conv1", "conv4", "fc"}
    rc, _, err = _quiet(profile_viewer.main, ["--input_log", str(logf), "--reader", "libQnnChrometraceProfilingReader.so",
                                              "--output", str(out / "trace.json")])
    assert rc == 0, err
    trace = json.loads((out / "trace.json").read_text())
    log = read_profile(logf)
    node_events = [e for e in trace["traceEvents"] if e.get("cat") == "node"]
    assert len(node_events) == len(log.executions) == RUNS * len(log.nodes)
    assert all(e["ph"] == "X" and e["dur"] >= 0 for e in node_events)
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 5 and "Top bottlenecks" in html and "Time per layer" in html
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html


def test_viewer_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    rc, _, err = _quiet(profile_viewer.main, ["--input_log", str(tmp_path / "none.log")])
    assert rc == 2 and err.count("\n") == 1 and "--input_log" in err
    (tmp_path / "bad.log").write_text('{"type": "header", "format": "openqnn-profile", "version": 99}\n')
    rc, _, err = _quiet(profile_viewer.main, ["--input_log", str(tmp_path / "bad.log")])
    assert rc == 2 and "version 99" in err and err.count("\n") == 1
    rc, _, err = _quiet(profile_viewer.main, ["--input_log", str(tmp_path / "bad.log"), "--reader", "nope",
                                              "--output", "x"])
    assert rc == 2 and "--reader nope" in err


def test_throughput_threads(profnet: dict[str, Path], tmp_path: Path) -> None:
    rc, printed, err = _quiet(net_run.main, ["--model", str(profnet["q8"]), "--backend", "htp", "--input_list",
                                             str(profnet["list"]), "--output_dir", str(tmp_path),
                                             "--num_inferences", "8", "--throughput_threads", "2"])
    assert rc == 0, err
    assert "8 inferences" in printed and "over 2 threads" in printed
    single = tmp_path / "single"
    assert _quiet(net_run.main, ["--model", str(profnet["q8"]), "--backend", "htp", "--input_list",
                                 str(profnet["list"]), "--output_dir", str(single)])[0] == 0
    for i in range(4):  # the threads' results are the single thread's
        np.testing.assert_array_equal(np.fromfile(tmp_path / f"Result_{i}" / "output.raw", np.float32),
                                      np.fromfile(single / f"Result_{i}" / "output.raw", np.float32))
    rc, _, err = _quiet(net_run.main, ["--model", str(profnet["q8"]), "--input_list", str(profnet["list"]),
                                       "--throughput_threads", "0"])
    assert rc == 2 and "--throughput_threads" in err


@pytest.mark.parametrize("backend", ["htp", "cpu"])
def test_platform_validator(backend: str, tmp_path: Path) -> None:
    rc, printed, err = _quiet(platform_validator.main, ["--backend", backend, "--directory", str(tmp_path)])
    assert rc == 0, printed + err
    rows = list(csv.DictReader(open(tmp_path / "platform_validator_results.csv")))
    checks = {r["item"]: r for r in rows}
    assert checks["self-test"]["status"] == "ok"
    if backend == "htp":
        assert "int8 path" in checks
    else:
        assert "isa" in checks and "threads" in checks
    rc, _, err = _quiet(platform_validator.main, ["--backend", "dsp"])
    assert rc == 2 and "--backend dsp" in err


@pytest.mark.parametrize("backend", ["htp", "cpu"])
def test_accuracy_debugger_names_the_four_bit_layer_first(profnet: dict[str, Path], tmp_path: Path,
                                                          backend: str) -> None:
    rc, printed, err = _quiet(accuracy_debugger.main, ["--framework_model", str(profnet["onnx"]), "--model",
                                                       str(profnet["q4"]), "--input_list", str(profnet["list"]),
                                                       "--output_dir", str(tmp_path), "--backend", backend])
    assert rc == 0, err
    rows = list(csv.DictReader(open(tmp_path / "layer_comparison.csv")))
    assert rows[0]["node"] == "conv2" and "weights 4-bit" in rows[0]["encoding"]
    assert float(rows[0]["sqnr_drop_db"]) > 10 > max(float(r["sqnr_drop_db"]) for r in rows[1:])
    assert "1. conv2 (Conv2d)" in printed
    assert (tmp_path / "layer_comparison.svg").read_text().startswith("<svg")
    from openqnn.profiling.accuracy import read_layer_sqnr
    from openqnn.profiling.advice import suggestions
    from openqnn.profiling.log import ProfileLog

    flagged = [a.node for a in suggestions(ProfileLog("basic", backend), [], read_layer_sqnr(
        tmp_path / "layer_comparison.csv")) if a.kind == "quantization"]
    assert flagged == ["conv2"]  # the layer adding the error, not the ones after it


def test_session_profiling_api(profnet: dict[str, Path], tmp_path: Path) -> None:
    import openqnn

    sess = openqnn.Session(profnet["q8"], backend="htp", profiling="basic")
    x = np.zeros((1, 3, 24, 24), np.float32)
    for _ in range(3):
        sess.run(x)
    log = read_profile(sess.write_profile(tmp_path))
    assert {"init", "load", "prepare", "deinit"} <= {e.name for e in log.events}
    assert len(log.inferences) == 3 and not log.executions
    with pytest.raises(openqnn.InvalidConfigError, match="closed"):
        sess.run(x)
    with pytest.raises(openqnn.InvalidConfigError, match="profiling"):
        openqnn.Session(profnet["q8"], backend="htp", profiling="full")
