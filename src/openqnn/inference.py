"""``QNNInference``: the guide's inference class (its step 4), on openqnn's runtime.

    engine = openqnn.QNNInference("qnn_model/model_optimized.so", backend="htp")
    result = engine.inference(input_tensor)        # float outputs, dequantized

The guide's class quantizes the input itself, runs the quantized model and dequantizes the output; this
one does the same steps with the model's own encodings, so ``inference`` gives exactly the floats that
``Session.run`` gives (the same rounding: round half to even, in float64, of the float32 input).

**Offsets.** QNN writes encodings as ``real = scale * (q + offset)``, offset = -zero_point (the files,
``input_specs.json`` and :class:`~openqnn.ir.Encoding` keep that sign). The guide's code uses the
zero-point sign: ``q = round(data / scale + offset)`` and ``real = (q - offset) * scale``. So
``input_offset`` and ``output_offset`` here are **zero points** (``-encoding.offset``): the guide's own
formulas, written with these attributes, give the right numbers (``tests/cli/test_deploy.py`` checks it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from openqnn.backends import backend_spec
from openqnn.errors import InputDataError, InvalidConfigError
from openqnn.ir.tensor import Encoding
from openqnn.quantization.encodings.math import dequantize, quantize
from openqnn.runtime.config import BackendConfig
from openqnn.runtime.context import is_context
from openqnn.runtime.session import Session, TensorInfo

__all__ = ["QNNInference"]

CONTEXTS_DIR = "context_binaries"  # the deployment folder's (openqnn deploy, the guide's output structure)


class QNNInference:
    """A model ready to run on one backend, with the guide's interface.

    ``model_path``:

    - a model library (``model_optimized.so``): where ``context_binaries/<backend>_context.bin`` lies beside
      it (the deployment folder ``openqnn deploy`` writes), that context is opened, nothing prepared again;
      otherwise the library's graph is prepared for ``backend`` here (a float library cannot run on htp:
      make its context with ``--input_list`` first);
    - a context binary (``htp_context.bin``), for ``backend``;
    - a converted model (``<stem>_net.json``), prepared for ``backend``.

    ``inference(x)`` takes an array (a model with one input) or a dict of input name -> array and returns
    the float outputs: one array for a model with one output, else a dict of output name -> array.

    >>> engine = QNNInference("qnn_model/model_optimized.so", backend="htp")   # doctest: +SKIP
    >>> probs = engine.inference(np.zeros((1, 3, 224, 224), np.float32))       # doctest: +SKIP
    """

    def __init__(self, model_path: str | os.PathLike[str], backend: str = "htp", num_threads: int | None = None,
                 config: BackendConfig | None = None):
        self.model_path = Path(model_path)
        self.backend = backend_spec(backend).name
        self.context: Path | None = None  # the context binary opened, where one was
        self._initialize(num_threads, config)

    def _initialize(self, num_threads: int | None, config: BackendConfig | None) -> None:
        p = self.model_path
        if not p.is_file():
            raise InvalidConfigError(f"{p}: no such file; give a model library (.so), a context binary (.bin) or a "
                                     "converted model (<stem>_net.json)")
        beside = p.parent / CONTEXTS_DIR / f"{self.backend}_context.bin"
        if is_context(p):
            self.context = p
        elif p.suffix == ".so" and beside.is_file():
            self.context = beside
        if self.context is not None:
            self.session = Session(self.context, backend=self.backend, num_threads=num_threads, config=config)
        else:
            from openqnn.api import load

            graph = load(p)
            spec = backend_spec(self.backend)
            if spec.capabilities.quantized_only and not any(t.encoding is not None for t in graph.tensors.values()):
                where = p.parent / CONTEXTS_DIR
                raise InvalidConfigError(
                    f"{p}: a float model, and the {self.backend} backend runs quantized models; make its context "
                    f"with calibration data: qnn-context-binary-generator --model {p} --backend {self.backend} "
                    f"--input_list FILE --output_dir {where} (or openqnn deploy with --input_list), or use "
                    "backend='cpu'")
            self.session = Session(graph, backend=self.backend, num_threads=num_threads, config=config)
        # tensors the backend exchanges as quantized integers (htp: native integer I/O, per-tensor encodings)
        native = self.session.backend.capabilities.native_integer_io
        io = self.session.graph

        def exchanged(names: list[str]) -> dict[str, Encoding]:
            encs = {n: io.tensors[n].encoding for n in names}
            return {n: e for n, e in encs.items() if native and e is not None and e.axis is None}

        self._in_enc = exchanged(list(io.inputs))
        self._out_enc = exchanged(list(io.outputs))

    # -- what the guide's class reads --------------------------------------------------------------------

    @property
    def inputs(self) -> list[TensorInfo]:
        return self.session.inputs

    @property
    def outputs(self) -> list[TensorInfo]:
        return self.session.outputs

    @property
    def is_quantized(self) -> bool:
        """Whether the backend takes or returns quantized integers, so inputs are quantized before the run
        and outputs dequantized after it (htp with a quantized model; cpu always exchanges floats)."""
        return bool(self._in_enc or self._out_enc)

    @property
    def input_scale(self) -> float | None:
        """The first input's scale (None: it is fed as floats)."""
        return _scale(self._in_enc.get(self.session.graph.inputs[0]))

    @property
    def input_offset(self) -> int | None:
        """The first input's zero point, the guide's offset: ``q = round(data / scale + offset)``. QNN's
        encoding offset is its negative (real = scale * (q + qnn_offset))."""
        return _zero_point(self._in_enc.get(self.session.graph.inputs[0]))

    @property
    def output_scale(self) -> float | None:
        """The first output's scale (None: it is returned as floats)."""
        return _scale(self._out_enc.get(self.session.graph.outputs[0]))

    @property
    def output_offset(self) -> int | None:
        """The first output's zero point, the guide's offset: ``real = (q - offset) * scale``."""
        return _zero_point(self._out_enc.get(self.session.graph.outputs[0]))

    # -- the guide's steps ---------------------------------------------------------------------------------

    def preprocess_input(self, data: np.ndarray | Mapping[str, np.ndarray]) -> Any:
        """Quantize the inputs the backend takes as integers (uint8 for 8-bit encodings, uint16 for 16-bit),
        cast the rest to their own type (float32 for float inputs). Returns the same form it was given: an
        array, or a dict by input name."""
        feeds = self._named(data, self.session.graph.inputs, "input")
        out = {n: self._quantize(n, np.asarray(v)) for n, v in feeds.items()}
        return out if isinstance(data, Mapping) else out[self.session.graph.inputs[0]]

    def inference(self, input_data: np.ndarray | Mapping[str, np.ndarray]) -> Any:
        """Preprocess, run, postprocess: the float outputs (an array for one output, else a dict by name)."""
        processed = self.preprocess_input(input_data)
        output = self._run_inference(processed)
        return self.postprocess_output(output)

    def postprocess_output(self, output: np.ndarray | Mapping[str, np.ndarray]) -> Any:
        """Dequantize the outputs the backend returned as integers; the rest as they are. An array for a
        model with one output, else a dict by output name."""
        names = self.session.graph.outputs
        outs = self._named(output, names, "output")
        result = {}
        for n, v in outs.items():
            enc = self._out_enc.get(n)
            result[n] = np.asarray(v) if enc is None else dequantize(v, enc.scale[0], enc.offset[0]).astype(np.float32)
        return result[names[0]] if len(names) == 1 else result

    def _run_inference(self, processed: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = self._named(processed, self.session.graph.inputs, "input")
        if self.is_quantized:
            return self.session.run(feeds, native_inputs=bool(self._in_enc), native_outputs=bool(self._out_enc))
        return self.session.run(feeds)

    def _quantize(self, name: str, value: np.ndarray) -> np.ndarray:
        enc = self._in_enc.get(name)
        if enc is None:
            return value.astype(self.session.graph.tensors[name].dtype.numpy, copy=False)
        q = quantize(value.astype(np.float32, copy=False), enc.scale[0], enc.offset[0], enc.bitwidth,
                     bounds=enc.int_range)
        return q.astype(np.uint8 if enc.bitwidth <= 8 else np.uint16)

    @staticmethod
    def _named(data: object, names: list[str], what: str) -> dict[str, np.ndarray]:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(names))
            if unknown:
                raise InputDataError(f"unknown {what}(s) {', '.join(map(str, unknown))}; the model's {what}s are "
                                     f"{', '.join(names)}")
            return {str(k): np.asarray(v) for k, v in data.items()}
        if len(names) != 1:
            raise InputDataError(f"one array, but the model has {len(names)} {what}s ({', '.join(names)}); pass a "
                                 f"dict of {what} name -> array")
        return {names[0]: np.asarray(data)}

    def __repr__(self) -> str:
        source = f"context {self.context}" if self.context is not None else str(self.model_path)
        return f"QNNInference({source}, backend={self.backend!r}, quantized={self.is_quantized})"


def _scale(enc: Encoding | None) -> float | None:
    return None if enc is None else float(enc.scale[0])


def _zero_point(enc: Encoding | None) -> int | None:
    """The guide's offset: the zero point, QNN's offset negated."""
    return None if enc is None else -int(enc.offset[0])
