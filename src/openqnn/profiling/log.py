"""The profiling log: ``<output_dir>/qnn-profiling-data_0.log``, JSON lines, versioned.

Every line is one JSON object with a ``type``; the first is the header. Format version 1 (docs/profiling.md
has the full description)::

    {"type": "header", "format": "openqnn-profile", "version": 1, "openqnn": "0.1.0", "level": "detailed",
     "backend": "htp", "arch": "v73", "vtcm_bytes": 8388608, "model": "...", "created": "2025-...",
     "threads": 2}
    {"type": "event", "name": "prepare", "start_us": 0.0, "us": 81234.5}          # init, load, prepare, deinit
    {"type": "node_info", "node": "conv1", "op_type": "Conv2d", "ran_on": "htp", "reason": null,
     "macs": 110592, "weight_bytes": 864, "vtcm_bytes": 9120, "out_shape": [1, 16, 16, 8],
     "weight_shape": [8, 3, 3, 3]}                                                # detailed only
    {"type": "inference", "index": 0, "start_us": 81300.1, "us": 812.3, "rss_bytes": 412345344}
    {"type": "node", "inference": 0, "node": "conv1", "start_us": 81301.0, "us": 120.4, "in_bytes": 3072,
     "out_bytes": 8192, "live_bytes": 11264}                                      # detailed only
    {"type": "summary", "peak_rss_bytes": 420000000, "planned_arena_bytes": 24576}

Times are microseconds from the profile's start. A reader refuses another ``format`` or a newer ``version``
with the file's name.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openqnn.errors import InvalidConfigError
from openqnn.serialization.netjson import atomic_write

__all__ = ["FORMAT", "LOG_NAME", "VERSION", "EventTime", "InferenceTime", "NodeExecution", "NodeInfo", "ProfileLog",
           "read_profile", "write_csv_table"]

FORMAT = "openqnn-profile"
VERSION = 1
LOG_NAME = "qnn-profiling-data_0.log"
LEVELS = ("basic", "detailed")


@dataclass(frozen=True)
class EventTime:
    """A phase outside inference: ``init`` (the whole of creating the session), ``load`` (reading the model or
    context), ``prepare`` (backend prepare, or binding a context), ``deinit`` (releasing it)."""

    name: str
    start_us: float
    us: float


@dataclass(frozen=True)
class InferenceTime:
    """One inference: when, how long, and the process's resident memory just after it."""

    index: int
    start_us: float
    us: float
    rss_bytes: int


@dataclass(frozen=True)
class NodeInfo:
    """What a node is and where it runs, known once: ``ran_on`` (a backend name; ``reason`` says why a node fell
    back), ``macs`` (multiply-accumulates per inference, 0 for ops without a weight product), its weights'
    bytes, and ``vtcm_bytes``: the working set it needs resident (its inputs, outputs and weights)."""

    node: str
    op_type: str
    ran_on: str
    reason: str | None = None
    macs: int = 0
    weight_bytes: int = 0
    vtcm_bytes: int = 0
    out_shape: tuple[int, ...] = ()
    weight_shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class NodeExecution:
    """One execution of one node in one inference (``live_bytes``: activations alive after it)."""

    inference: int
    node: str
    start_us: float
    us: float
    in_bytes: int
    out_bytes: int
    live_bytes: int


@dataclass
class ProfileLog:
    """A profile in memory: what :meth:`write` puts in the log and :func:`read_profile` reads back."""

    level: str
    backend: str
    arch: str | None = None
    vtcm_bytes: int | None = None
    model: str = ""
    created: str = ""
    threads: int | None = None
    openqnn: str = ""
    events: list[EventTime] = field(default_factory=list)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    inferences: list[InferenceTime] = field(default_factory=list)
    executions: list[NodeExecution] = field(default_factory=list)
    peak_rss_bytes: int = 0
    planned_arena_bytes: int = 0

    def event(self, name: str) -> EventTime | None:
        return next((e for e in self.events if e.name == name), None)

    def lines(self) -> list[dict[str, Any]]:
        header = {"type": "header", "format": FORMAT, "version": VERSION, "openqnn": self.openqnn,
                  "level": self.level, "backend": self.backend, "arch": self.arch, "vtcm_bytes": self.vtcm_bytes,
                  "model": self.model, "created": self.created, "threads": self.threads}
        out = [header]
        out += [{"type": "event", **asdict(e)} for e in self.events]
        out += [{"type": "node_info", **asdict(n)} for n in self.nodes.values()]
        out += [{"type": "inference", **asdict(i)} for i in self.inferences]
        out += [{"type": "node", **asdict(x)} for x in self.executions]
        out.append({"type": "summary", "peak_rss_bytes": self.peak_rss_bytes,
                    "planned_arena_bytes": self.planned_arena_bytes})
        return out

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the log (to a temporary name, then renamed); returns its path."""
        p = Path(path)
        with atomic_write(p) as f:
            f.writelines(json.dumps(line, separators=(",", ":")) + "\n" for line in self.lines())
        return p


def read_profile(path: str | os.PathLike[str]) -> ProfileLog:
    """A profiling log read back; a file that is not one (or of a newer version) is an error naming it."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise InvalidConfigError(f"--input_log {p}: no such file; give the qnn-profiling-data_0.log that "
                                 "qnn-net-run --profiling_level writes in its --output_dir") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidConfigError(f"--input_log {p}: cannot be read ({e}); give a profiling log") from None
    log: ProfileLog | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            kind = line.pop("type")
        except (ValueError, KeyError, AttributeError, TypeError):
            raise InvalidConfigError(f"--input_log {p}: line {number} is not a profiling record; give a log "
                                     "qnn-net-run --profiling_level wrote") from None
        if log is None:
            if kind != "header" or line.get("format") != FORMAT:
                raise InvalidConfigError(f"--input_log {p}: not an openqnn profiling log (no {FORMAT} header); "
                                         "give a log qnn-net-run --profiling_level wrote")
            if not isinstance(line.get("version"), int) or line["version"] > VERSION:
                raise InvalidConfigError(f"--input_log {p}: format version {line.get('version')} is newer than "
                                         f"this openqnn reads ({VERSION}); upgrade openqnn")
            log = ProfileLog(level=str(line.get("level", "basic")), backend=str(line.get("backend", "?")),
                             arch=line.get("arch"), vtcm_bytes=line.get("vtcm_bytes"), model=str(line.get("model", "")),
                             created=str(line.get("created", "")), threads=line.get("threads"),
                             openqnn=str(line.get("openqnn", "")))
            continue
        try:
            if kind == "event":
                log.events.append(EventTime(**line))
            elif kind == "node_info":
                info = NodeInfo(**{**line, "out_shape": tuple(line.get("out_shape", ())),
                                   "weight_shape": tuple(line.get("weight_shape", ()))})
                log.nodes[info.node] = info
            elif kind == "inference":
                log.inferences.append(InferenceTime(**line))
            elif kind == "node":
                log.executions.append(NodeExecution(**line))
            elif kind == "summary":
                log.peak_rss_bytes = int(line.get("peak_rss_bytes", 0))
                log.planned_arena_bytes = int(line.get("planned_arena_bytes", 0))
            # other types: written by a later version of this format; skipped
        except TypeError as e:
            raise InvalidConfigError(f"--input_log {p}: line {number} ({kind}) is malformed ({e})") from None
    if log is None:
        raise InvalidConfigError(f"--input_log {p}: empty; give a log qnn-net-run --profiling_level wrote")
    return log


def write_csv_table(path: str | os.PathLike[str], header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """A CSV file of the profiling tools (header, then rows), written to a temporary name and renamed."""
    p = Path(path)
    with atomic_write(p) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return p
