"""openqnn behind ONNX's backend interface (``onnx.backend.base.Backend`` / ``BackendRep``).

    import openqnn.onnx_backend as backend
    rep = backend.prepare(model, device="CPU")
    y, = rep.run([x])                          # or rep.run({"x": x})
    y, = backend.run_node(node, [x])           # one node, one call

Models are converted with :func:`openqnn.convert` and run on the ``cpu`` backend (PyTorch kernels;
``CUDA`` runs the same kernels on a CUDA device when PyTorch has one). A model whose inputs all have
static shapes is converted in :meth:`OpenQnnBackend.prepare`; one with dynamic dims is converted on
its first run, with the dims taken from that run's inputs, and the conversion is cached per input-shape
signature. Outputs come back in graph-output order, in the element types the model declares.

openqnn compiles static graphs, so operands like Reshape's ``shape``, Slice's ``starts`` or a Reduce's
``axes`` must be constants. When a model feeds one from a graph input (as ONNX's node tests do), the
rep bakes that input's run-time value into the graph as an initializer and caches the conversion per
value (``freeze_inputs=False`` turns this off). Models older than openqnn's oldest opset are lifted
with ``onnx.version_converter`` first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from openqnn.errors import InputDataError

__all__ = ["OpenQnnBackend", "OpenQnnRep", "prepare", "run_model", "run_node", "supports_device"]

# keyword arguments of prepare() that openqnn reads; others (rtol/atol from ONNX's test runner...) are ignored
_PREPARE_KW = ("num_threads", "cast_outputs", "check_model", "input_dims", "constant_inputs", "freeze_inputs")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def _parse_device(device: str | Device) -> Device:
    return device if isinstance(device, Device) else Device(str(device).upper())


def _declared_np_dtype(vi: onnx.ValueInfoProto) -> np.dtype | None:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.elem_type:
        return None
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
    except (KeyError, ValueError, TypeError):
        return None


def _is_static(vi: onnx.ValueInfoProto) -> bool:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
        return False
    return all(d.HasField("dim_value") and d.dim_value > 0 for d in tt.shape.dim)


def _to_array(x: Any) -> np.ndarray:
    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _upgrade_old_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """Lift a model older than openqnn's oldest opset with onnx's version converter (when it can)."""
    from openqnn.frontends.onnx.frontend import MIN_OPSET

    opset = next((imp.version for imp in model.opset_import if imp.domain in ("", "ai.onnx")), None)
    if opset is None or opset >= MIN_OPSET:
        return model
    try:
        from onnx import version_converter

        return version_converter.convert_version(model, MIN_OPSET)
    except Exception:
        return model


class _Runner:
    """One converted graph prepared on one device."""

    def __init__(self, model: onnx.ModelProto, input_dims: Mapping[str, Sequence[int]] | None, device: Device,
                 num_threads: int | None):
        import openqnn

        self.graph = openqnn.convert(model, input_dims=input_dims)
        if device.type == DeviceType.CUDA:
            import torch

            from openqnn.backends.cpu.plan import Plan

            if num_threads:
                torch.set_num_threads(num_threads)
            self._exe: Any = Plan(self.graph, torch.device("cuda", device.device_id), backend_name="cuda")
        else:
            self._exe = openqnn.Session(self.graph, backend="cpu", num_threads=num_threads)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        out = self._exe.run(feeds)
        # graph.outputs follows the ONNX graph's output order (openqnn renames them back where it can)
        return [out[name] for name in self.graph.outputs]


class OpenQnnRep(BackendRep):
    """A model prepared for repeated runs: ``rep.run(inputs)`` -> outputs in graph-output order.

    openqnn compiles static graphs: operands such as Reshape's shape, Slice's starts or a Reduce's
    axes must be constants. When the model feeds one from a graph input, the rep bakes that input's
    value from the run into the graph (as an initializer) and caches the conversion per value, so a
    run with other values converts again. ``frozen_inputs`` names the inputs treated this way.
    """

    def __init__(self, model: onnx.ModelProto, device: str | Device = "CPU", num_threads: int | None = None,
                 cast_outputs: bool = True, input_dims: Mapping[str, Sequence[int]] | None = None,
                 constant_inputs: Sequence[str] = (), freeze_inputs: bool = True):
        self.model = model
        self.freeze_inputs = freeze_inputs
        self.device = _parse_device(device)
        self.num_threads = num_threads
        self.cast_outputs = cast_outputs
        g = model.graph
        inits = {i.name for i in g.initializer} | {s.values.name for s in g.sparse_initializer}
        self._all_inputs = [vi.name for vi in g.input]
        self._inputs = [vi for vi in g.input if vi.name not in inits]
        self.input_names = [vi.name for vi in self._inputs]
        self._input_dtypes = {vi.name: _declared_np_dtype(vi) for vi in self._inputs}
        self.output_names = [vo.name for vo in g.output]
        self.output_dtypes = [_declared_np_dtype(vo) for vo in g.output]
        self._fixed_dims = {k: tuple(int(d) for d in v) for k, v in (input_dims or {}).items()}
        self._static = all(_is_static(vi) or vi.name in self._fixed_dims for vi in self._inputs)
        unknown = sorted(set(constant_inputs) - set(self.input_names))
        if unknown:
            raise InputDataError(f"constant_inputs names {', '.join(unknown)}, which are not model inputs")
        self.frozen_inputs: set[str] = set(constant_inputs)
        self._cache: dict[tuple, _Runner] = {}
        # the element types openqnn itself produced on the last run (before casting to the declared types)
        self.native_output_dtypes: list[np.dtype] = []
        if self._static and not self.frozen_inputs:
            self._build(None)  # convert now, so unsupported models fail in prepare()

    # -- inputs ------------------------------------------------------------------------------------
    def _feeds(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            unknown = sorted(set(inputs) - set(self._all_inputs))
            if unknown:
                raise InputDataError(f"unknown input(s) {', '.join(unknown)}; the model's inputs are "
                                     f"{', '.join(self.input_names)}")
            feeds = {k: _to_array(v) for k, v in inputs.items() if k in self.input_names}
        else:
            if isinstance(inputs, (np.ndarray, onnx.TensorProto)):
                inputs = [inputs]
            values = list(inputs)
            if len(values) == len(self.input_names):
                names = self.input_names
            elif len(values) == len(self._all_inputs):  # old models list initializers among the inputs
                names = self._all_inputs
            else:
                raise InputDataError(f"got {len(values)} input(s); the model takes {len(self.input_names)} "
                                     f"({', '.join(self.input_names)})")
            feeds = {n: _to_array(v) for n, v in zip(names, values) if n in self.input_names}
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise InputDataError(f"missing input(s) {', '.join(missing)}")
        for n, arr in feeds.items():
            want = self._input_dtypes.get(n)
            if want is not None and arr.dtype != want:
                feeds[n] = arr.astype(want)
        return feeds

    # -- conversion --------------------------------------------------------------------------------
    def _key(self, feeds: Mapping[str, np.ndarray] | None) -> tuple:
        if feeds is None:
            return (), ()
        shapes = () if self._static else tuple(
            (n, tuple(feeds[n].shape)) for n in self.input_names if n not in self.frozen_inputs)
        values = tuple((n, feeds[n].dtype.str, feeds[n].shape, feeds[n].tobytes()) for n in sorted(self.frozen_inputs))
        return shapes, values

    def _model_with_constants(self, feeds: Mapping[str, np.ndarray]) -> onnx.ModelProto:
        if not self.frozen_inputs:
            return self.model
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        keep = [vi for vi in m.graph.input if vi.name not in self.frozen_inputs]
        del m.graph.input[:]
        m.graph.input.extend(keep)
        for n in sorted(self.frozen_inputs):
            m.graph.initializer.append(numpy_helper.from_array(np.asarray(feeds[n]), n))
        return m

    def _needs_constant(self, err: Exception) -> set[str]:
        """Graph inputs to bake in so that the values openqnn's error says must be constants become so.

        The error quotes the ONNX value ('name'); when that is computed from graph inputs rather than
        being one, its graph-input ancestors are frozen (not looking through Shape/Size, whose outputs
        openqnn already knows from the static shapes).
        """
        msg = str(err)
        if not self.freeze_inputs or "constant" not in msg:
            return set()
        free = [n for n in self.input_names if n not in self.frozen_inputs]
        direct = {n for n in free if f"'{n}'" in msg}
        if direct:
            return direct
        producers = {o: node for node in self.model.graph.node for o in node.output if o}
        named = [v for v in re.findall(r"'([^']+)'", msg) if v in producers]
        found: set[str] = set()
        stack, seen = list(named), set()
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in free:
                found.add(v)
                continue
            node = producers.get(v)
            if node is None or node.op_type in ("Shape", "Size"):
                continue
            stack.extend(x for x in node.input if x)
        return found

    def _build(self, feeds: Mapping[str, np.ndarray] | None) -> _Runner | None:
        from openqnn.errors import ConversionError

        while True:
            dims: dict[str, tuple[int, ...]] | None = None
            if feeds is not None and not self._static:
                dims = {n: tuple(feeds[n].shape) for n in self.input_names if n not in self.frozen_inputs}
            if dims is not None or self._fixed_dims:
                dims = {**(dims or {}), **{k: v for k, v in self._fixed_dims.items() if k not in self.frozen_inputs}}
            try:
                model = self.model if feeds is None else self._model_with_constants(feeds)
                runner = _Runner(model, dims, self.device, self.num_threads)
            except ConversionError as e:
                need = self._needs_constant(e)
                if not need:
                    raise
                self.frozen_inputs |= need
                if feeds is None:  # wait for the first run's values
                    return None
                continue
            self._cache[self._key(feeds)] = runner
            return runner

    def _runner(self, feeds: Mapping[str, np.ndarray]) -> _Runner:
        runner = self._cache.get(self._key(feeds))
        if runner is None:
            runner = self._build(feeds)
            assert runner is not None
        return runner

    # -- run ---------------------------------------------------------------------------------------
    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        feeds = self._feeds(inputs)
        runner = self._runner(feeds)
        outs = runner.run({n: v for n, v in feeds.items() if n not in self.frozen_inputs})
        self.native_output_dtypes = [o.dtype for o in outs]
        if self.cast_outputs:
            outs = [o if want is None or o.dtype == want else o.astype(want)
                    for o, want in zip(outs, self.output_dtypes)]
        return namedtupledict("Outputs", self.output_names)(*outs)


class OpenQnnBackend(Backend):
    """ONNX backend interface over openqnn's converter and cpu backend."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> OpenQnnRep:
        """Convert ``model`` (a ModelProto, or a path to one) for ``device``.

        Keyword arguments: ``num_threads``; ``cast_outputs`` (default True: outputs take the model's
        declared element types); ``check_model`` (default True: run ``onnx.checker`` first);
        ``input_dims`` (name -> shape, fixing dynamic dims up front); ``constant_inputs`` (input names
        to bake in from each run's values); ``freeze_inputs`` (default True: bake in, on demand, the
        inputs openqnn needs as constants). Others (e.g. the test runner's rtol/atol) are ignored.
        """
        if not isinstance(model, onnx.ModelProto):
            from openqnn.frontends.onnx.frontend import load_onnx

            model = load_onnx(model)
        if not cls.supports_device(device):
            raise RuntimeError(f"openqnn's ONNX backend does not support device {device!r} here; "
                               "use 'CPU'" + (" (PyTorch sees no CUDA device)" if "CUDA" in str(device).upper() else ""))
        if kwargs.get("check_model", True):
            onnx.checker.check_model(model)
        model = _upgrade_old_opset(model)
        opts = {k: kwargs[k] for k in _PREPARE_KW if k in kwargs and k != "check_model"}
        return OpenQnnRep(model, device, **opts)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[Any, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(
        cls,
        node: onnx.NodeProto,
        inputs: Any,
        device: str = "CPU",
        outputs_info: Sequence[tuple[Any, tuple[int, ...]]] | None = None,
        **kwargs: Any,
    ) -> tuple[Any, ...]:
        """Run one node on ``inputs`` (a list for the node's present inputs in order, or a dict by name).

        ``outputs_info`` gives (dtype, shape) per output; without it ONNX shape inference types them.
        ``opset_version`` picks the default-domain opset (default: the newest this onnx knows).
        ``static_inputs`` (indices or names) turns those inputs into initializers, for ops whose
        shape-like inputs openqnn needs as constants.
        """
        super().run_node(node, inputs, device, outputs_info, **kwargs)
        opset = int(kwargs.pop("opset_version", onnx.defs.onnx_opset_version()))
        static = set(kwargs.pop("static_inputs", ()) or ())
        present = [x for x in node.input if x]
        if isinstance(inputs, Mapping):
            values = {k: _to_array(v) for k, v in inputs.items()}
        else:
            seq = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            if len(seq) != len(present):
                raise InputDataError(f"node {node.op_type} has {len(present)} present input(s); got {len(seq)}")
            values = {n: _to_array(v) for n, v in zip(present, seq)}
        graph_inputs, inits, feeds = [], [], {}
        for i, name in enumerate(present):
            if name not in values:
                raise InputDataError(f"missing input '{name}' of node {node.op_type}")
            arr = values[name]
            if i in static or name in static:
                inits.append(numpy_helper.from_array(arr, name))
            elif name not in feeds:
                elem = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
                graph_inputs.append(onnx.helper.make_tensor_value_info(name, elem, list(arr.shape)))
                feeds[name] = arr
        outs = [x for x in node.output if x]
        if outputs_info is not None:
            graph_outputs = [
                onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dt)),
                                                   None if shape is None else list(shape))
                for name, (dt, shape) in zip(outs, outputs_info)
            ]
        else:
            graph_outputs = [onnx.helper.make_empty_tensor_value_info(name) for name in outs]
        graph = onnx.helper.make_graph([node], f"run_node_{node.op_type}", graph_inputs, graph_outputs, inits)
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        if outputs_info is None:
            try:
                inferred = onnx.shape_inference.infer_shapes(model)
                by_name = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
                for vo in model.graph.output:
                    if vo.name in by_name and by_name[vo.name].type.HasField("tensor_type"):
                        vo.type.CopyFrom(by_name[vo.name].type)
            except Exception:
                pass
        kwargs.setdefault("check_model", False)
        return cls.prepare(model, device, **kwargs).run(feeds)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            d = _parse_device(device)
        except (AttributeError, ValueError):
            return False
        if d.type == DeviceType.CPU:
            return True
        if d.type == DeviceType.CUDA:
            return _cuda_available()
        return False


prepare = OpenQnnBackend.prepare
run_model = OpenQnnBackend.run_model
run_node = OpenQnnBackend.run_node
supports_device = OpenQnnBackend.supports_device
is_compatible = OpenQnnBackend.is_compatible
