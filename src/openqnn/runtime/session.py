"""Session: load a model, prepare it for a backend once, run it many times."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from openqnn.backends import Fallback, backend_spec, create_backend
from openqnn.backends.base import Backend, ContextBackend, Executable
from openqnn.backends.partition import FORCED, PlacementConfig
from openqnn.errors import ContextError, InputDataError, InvalidConfigError, OpenQnnError
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph
from openqnn.runtime.config import BackendConfig, check_num_threads
from openqnn.runtime.context import Context, is_context, open_context
from openqnn.runtime.loading import load_graph
from openqnn.runtime.partition_report import (
    PartitionReport,
    check_fallbacks,
    check_placement,
    partition_report,
)

if TYPE_CHECKING:
    from openqnn.profiling.log import ProfileLog
    from openqnn.profiling.recorder import SessionProfiler

__all__ = ["Session", "TensorInfo"]

log = logging.getLogger("openqnn.runtime")

_FIRST_FALLBACKS = 3  # nodes named in the one-line fallback warning


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output as the application sees it."""

    name: str
    shape: tuple[int, ...]
    dtype: DType
    layout: str | None = None

    @property
    def numpy_dtype(self) -> np.dtype:
        return self.dtype.numpy


class Session:
    """A model prepared for one backend.

    >>> sess = openqnn.Session("model_net.json", backend="cpu")      # doctest: +SKIP
    >>> out = sess.run({"input": np.zeros((1, 3, 224, 224), np.float32)})  # doctest: +SKIP
    """

    def __init__(self, model: Graph | str | os.PathLike[str], backend: str | None = None,
                 num_threads: int | None = None, config: BackendConfig | None = None, graph_name: str | None = None,
                 profiling: str | None = None):
        """``model``: a graph, a ``_net.json`` or a model library (``lib<name>.so``; prepared here for
        ``backend``, cpu by default) or a context
        binary (bound as saved, nothing prepared again; ``backend`` must be the context's if given,
        ``graph_name`` picks a graph of a context holding several). ``config``: the backends' settings and
        the placement (``config.placement``: nodes forced to a backend, ``disable_cpu_fallback``).

        ``profiling`` (``"basic"`` or ``"detailed"``) records init, load/prepare, each run and de-init
        (``detailed``: each node too): :meth:`profile` gives it, :meth:`write_profile` writes the log."""
        self.profiler: SessionProfiler | None = None
        if profiling is not None:
            from openqnn.profiling.recorder import SessionProfiler

            self.profiler = SessionProfiler(profiling, str(getattr(model, "name", model)))
        with self._phase("init"):
            self._init(model, backend, num_threads, config, graph_name)
        if self.profiler is not None:
            self.profiler.attach(self.backend, self._exe, self.graph, num_threads)

    def _init(self, model: Graph | str | os.PathLike[str], backend: str | None, num_threads: int | None,
              config: BackendConfig | None, graph_name: str | None) -> None:
        if num_threads is not None:
            check_num_threads(num_threads)
        self.placement = config.placement if config is not None else PlacementConfig()
        if not isinstance(model, Graph) and is_context(model):
            self._open_context(model, backend, num_threads, config, graph_name)
            return
        if isinstance(model, Graph):
            self.graph = model
        else:
            with self._phase("load"):
                self.graph = load_graph(Path(model))
        spec = backend_spec(backend or "cpu")
        self.backend: Backend = create_backend(spec.name, config.section(spec.name) if config is not None else None,
                                               num_threads)
        with self._phase("prepare"):
            if self.placement.force_backend:
                check_placement(self.placement, spec.name, self.graph)
                self._exe: Executable = self.backend.prepare(self.graph, self.placement)  # type: ignore[call-arg]
            else:
                self._exe = self.backend.prepare(self.graph)
        self._nodes = [(n.name, n.op_type) for n in self.graph.nodes]
        check_fallbacks(self.backend.name, self._exe.fallbacks, self.placement)
        warn_fallbacks(self.backend.name, [f for f in self._exe.fallbacks if f.reason != FORCED], len(self.graph.nodes))

    def _open_context(self, model: str | os.PathLike[str], backend: str | None, num_threads: int | None,
                      config: BackendConfig | None, graph_name: str | None) -> None:
        """Bind a context binary's prepared graph. Its checksum runs in a worker thread while the steps bind; it
        is waited for before this session exists, and first whatever else fails (a corrupt file is refused as
        corrupt). No cyclic garbage collection meanwhile: opening makes thousands of objects that all live on
        (a BERT-style encoder's context opened 5% faster without the collector's passes over them)."""
        collect = gc.isenabled()
        gc.disable()
        try:
            with self._phase("load"):
                context = open_context(model, backend, defer_checksum=True)
            try:
                self._bind_context(context, backend, num_threads, config, graph_name)
            except BaseException as e:
                context.verify()
                if isinstance(e, OpenQnnError) or not isinstance(e, (KeyError, TypeError, ValueError, IndexError,
                                                                      AttributeError)):
                    raise
                # an intact file whose steps do not bind: not one this openqnn wrote (its writer checks them)
                raise ContextError(f"{model}: its prepared steps do not bind ({type(e).__name__}: "
                                   f"{(str(e).splitlines() or [''])[0][:200]}); regenerate it with "
                                   "qnn-context-binary-generator") from None
            context.verify()
        finally:
            if collect:
                gc.enable()

    def _bind_context(self, context: Context, backend: str | None, num_threads: int | None,
                      config: BackendConfig | None, graph_name: str | None) -> None:
        prepared = context.graph(graph_name)
        self.graph = prepared.io
        backend_ = cast(ContextBackend, create_backend(context.backend, config.section(context.backend)
                                                       if config else None, num_threads))
        self.backend = backend_
        with self._phase("prepare"):
            self._exe = backend_.bind(prepared)
        # (the placement was decided when the context was compiled: its steps say where each node runs)
        self._nodes = [(s.node, s.op_type) for s in prepared.steps if not s.attrs.get("edge")]
        check_fallbacks(self.backend.name, self._exe.fallbacks, self.placement)

    def _phase(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self.profiler.phase(name) if self.profiler is not None else contextlib.nullcontext()

    def profile(self) -> ProfileLog:
        """The profile recorded so far (a session made with ``profiling=``)."""
        if self.profiler is None:
            raise InvalidConfigError("this session records no profile; create it with profiling='basic' or "
                                     "'detailed'")
        return self.profiler.finish()

    def write_profile(self, output_dir: str | os.PathLike[str]) -> Path:
        """Release the session (timed as de-init) and write ``<output_dir>/qnn-profiling-data_0.log``."""
        from openqnn.profiling.log import LOG_NAME

        self.close()
        return self.profile().write(Path(output_dir) / LOG_NAME)

    def close(self) -> None:
        """Release the prepared model (weights, kernels); the session cannot run after it."""
        if not hasattr(self, "_exe"):
            return
        with self._phase("deinit"):
            del self._exe
            gc.collect()

    @property
    def fallbacks(self) -> list[Fallback]:
        """The nodes that run on the cpu fallback instead of this session's backend, with reasons."""
        return list(self._exe.fallbacks)

    def partition_report(self) -> PartitionReport:
        """Where each node runs and why: ``"supported"`` on this session's backend, ``"forced"`` by the config's
        ``openqnn.force_backend``, or the reason the backend refused it (it runs on the cpu fallback).

        >>> print(sess.partition_report().table())   # doctest: +SKIP
        """
        return partition_report(self.backend.name, self._nodes, self._exe.fallbacks, self.placement)

    @property
    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(t.name, t.shape, t.dtype, t.src_axis_format) for t in self.graph.input_tensors()]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(t.name, t.shape, t.dtype, t.src_axis_format) for t in self.graph.output_tensors()]

    def run(self, feeds: Mapping[str, np.ndarray] | np.ndarray, *, native_inputs: bool = False,
            native_outputs: bool = False) -> dict[str, np.ndarray]:
        """Run one inference: input name -> array, returns output name -> array. A model with one
        input also takes the bare array.

        On the htp backend, ``native_inputs`` feeds quantized integers (uint8/uint16) instead of floats,
        and ``native_outputs`` returns them instead of dequantized floats.
        """
        if not hasattr(self, "_exe"):
            raise InvalidConfigError("the session was closed; create a new one to run the model")
        if self.profiler is not None:
            with self.profiler.inference():
                return self._run(feeds, native_inputs, native_outputs)
        return self._run(feeds, native_inputs, native_outputs)

    def _run(self, feeds: Mapping[str, np.ndarray] | np.ndarray, native_inputs: bool,
             native_outputs: bool) -> dict[str, np.ndarray]:
        feeds = self._feeds(feeds)
        unknown = sorted(set(feeds) - set(self.graph.inputs))
        if unknown:
            raise InputDataError(f"unknown input(s) {', '.join(unknown)}; the model's inputs are "
                                 f"{', '.join(self.graph.inputs)}")
        if native_inputs or native_outputs:
            if not self.backend.capabilities.native_integer_io:
                raise InvalidConfigError(f"native (quantized integer) inputs/outputs: the {self.backend.name} backend "
                                         "takes and returns floats; use a backend with native integer I/O (htp)")
            return self._exe.run(feeds, native_inputs, native_outputs)  # type: ignore[call-arg]
        return self._exe.run(feeds)

    def _feeds(self, feeds: object) -> Mapping[str, np.ndarray]:
        if isinstance(feeds, Mapping):
            return feeds
        names = self.graph.inputs
        if isinstance(feeds, np.ndarray) or hasattr(feeds, "__array__"):
            if len(names) == 1:
                return {names[0]: np.asarray(feeds)}
            raise InputDataError(f"Session.run got one array, but the model has {len(names)} inputs "
                                 f"({', '.join(names)}); pass a dict of input name -> array")
        raise InputDataError(f"Session.run takes a dict of input name -> array (inputs: {', '.join(names)})"
                             f"{' or the bare array' if len(names) == 1 else ''}, not {type(feeds).__name__}")


def warn_fallbacks(backend: str, fallbacks: Sequence[Fallback], num_nodes: int) -> None:
    """One warning for a prepared model whose nodes (some or all) run on the cpu fallback: the count,
    the first few nodes with their reasons, and where the full list is."""
    if not fallbacks:
        return
    first = "; ".join(f"{f.node} ({f.op_type}): {f.reason}" for f in fallbacks[:_FIRST_FALLBACKS])
    more = f"; and {len(fallbacks) - _FIRST_FALLBACKS} more" if len(fallbacks) > _FIRST_FALLBACKS else ""
    log.warning("%s: %d of %d node(s) fall back to cpu: %s%s (--log_level info, or logging at INFO for "
                "'openqnn', lists them all)", backend, len(fallbacks), num_nodes, first, more)
