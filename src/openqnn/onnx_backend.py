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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from openqnn.errors import InputDataError

__all__ = ["OpenQnnBackend", "OpenQnnRep", "prepare", "run_model", "run_node", "supports_device"]

# keyword arguments of prepare() that openqnn reads; others (rtol/atol from ONNX's test runner...) are ignored
_PREPARE_KW = ("num_threads", "cast_outputs", "check_model", "input_dims")


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
    """A model prepared for repeated runs: ``rep.run(inputs)`` -> outputs in graph-output order."""

    def __init__(self, model: onnx.ModelProto, device: str | Device = "CPU", num_threads: int | None = None,
                 cast_outputs: bool = True, input_dims: Mapping[str, Sequence[int]] | None = None):
        self.model = model
        self.device = _parse_device(device)
        self.num_threads = num_threads
        self.cast_outputs = cast_outputs
        g = model.graph
        inits = {i.name for i in g.initializer} | {s.values.name for s in g.sparse_initializer}
        self._all_inputs = [vi.name for vi in g.input]
        self._inputs = [vi for vi in g.input if vi.name not in inits]
        self.input_names = [vi.name for vi in self._inputs]
        self.output_names = [vo.name for vo in g.output]
        self.output_dtypes = [_declared_np_dtype(vo) for vo in g.output]
        self._fixed_dims = dict(input_dims or {})
        self._static = all(_is_static(vi) or vi.name in self._fixed_dims for vi in self._inputs)
        self._cache: dict[tuple[tuple[str, tuple[int, ...]], ...], _Runner] = {}
        self._static_runner: _Runner | None = None
        # the element types openqnn itself produced on the last run (before casting to the declared types)
        self.native_output_dtypes: list[np.dtype] = []
        if self._static:
            self._static_runner = _Runner(model, self._fixed_dims or None, self.device, num_threads)

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
        return feeds

    def _runner(self, feeds: Mapping[str, np.ndarray]) -> _Runner:
        if self._static_runner is not None:
            return self._static_runner
        key = tuple((n, tuple(int(d) for d in feeds[n].shape)) for n in self.input_names)
        runner = self._cache.get(key)
        if runner is None:
            dims = {n: s for n, s in key}
            dims.update(self._fixed_dims)
            runner = self._cache[key] = _Runner(self.model, dims, self.device, self.num_threads)
        return runner

    # -- run ---------------------------------------------------------------------------------------
    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:  # noqa: ARG002
        feeds = self._feeds(inputs)
        outs = self._runner(feeds).run(feeds)
        self.native_output_dtypes = [o.dtype for o in outs]
        if self.cast_outputs:
            outs = [o if want is None or o.dtype == want else o.astype(want)
                    for o, want in zip(outs, self.output_dtypes)]
        return namedtupledict("Outputs", self.output_names)(*outs)


class OpenQnnBackend(Backend):
    """ONNX backend interface over openqnn's converter and cpu backend."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:  # noqa: ARG003
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> OpenQnnRep:
        """Convert ``model`` (a ModelProto, or a path to one) for ``device``.

        Keyword arguments: ``num_threads``, ``cast_outputs`` (default True: outputs take the model's
        declared element types), ``check_model`` (default True: run ``onnx.checker`` first) and
        ``input_dims`` (name -> shape, fixing dynamic dims up front). Others are ignored.
        """
        if not isinstance(model, onnx.ModelProto):
            from openqnn.frontends.onnx.frontend import load_onnx

            model = load_onnx(model)
        if not cls.supports_device(device):
            raise RuntimeError(f"openqnn's ONNX backend does not support device {device!r} here; "
                               "use 'CPU'" + (" (PyTorch sees no CUDA device)" if "CUDA" in str(device).upper() else ""))
        if kwargs.get("check_model", True):
            onnx.checker.check_model(model)
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
            except Exception:  # noqa: BLE001 - untyped outputs still run; they keep openqnn's types
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
