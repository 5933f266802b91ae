"""``<stem>.cpp``: a graph as composition source against ``openqnn/model_api.h``.

One ``m.tensor(...)`` line per tensor and one ``m.node(...)`` line per node, in the graph's order, with
the same fields as the ``_net.json`` (QNN's tensor and data types, quant_params and node params as JSON
objects); a static tensor names its data by (offset, size) in bytes into ``<stem>.bin``. A person can read
and edit it; ``qnn-model-lib-generator`` compiles it into a model library.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from openqnn.errors import InvalidModelError
from openqnn.ir.graph import Graph
from openqnn.serialization import graph_to_json, node_to_json, tensor_to_json
from openqnn.serialization.netjson import atomic_write
from openqnn.serialization.tensorfile import MAX_HEADER, entries

__all__ = ["c_string", "weight_offsets", "write_source"]


def c_string(text: str) -> str:
    """``text`` as a C string literal: printable ASCII as is, everything else as octal escapes of its
    UTF-8 bytes (a name may hold any character; no escape can run into the next one)."""
    out = []
    for b in text.encode("utf-8"):
        c = chr(b)
        if c in '"\\?':
            out.append("\\" + c)
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def _comment(text: str) -> str:
    """``text`` safe inside a ``//`` comment: control characters and backslashes escaped (a newline would end
    the comment, a trailing backslash would splice the next line into it)."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _json_literal(value: Any) -> str:
    """A JSON value as a C++ string literal: a raw string where it can be one (it reads as the JSON)."""
    if value is None or value == {}:
        return '""'
    text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False, allow_nan=False)
    if ")oq\"" not in text and all(c >= " " for c in text):
        return f'R"oq({text})oq"'
    return c_string(text)


def weight_offsets(bin_path: Path) -> dict[str, tuple[int, int]]:
    """Each array of a safetensors weights file: name -> (offset, size) in bytes from the file's start."""
    try:
        with open(bin_path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            found = entries(head + f.read(min(n, MAX_HEADER)))
    except OSError as e:
        raise InvalidModelError(f"{bin_path}: cannot be read ({e.strerror or e})") from None
    except ValueError as e:
        raise InvalidModelError(f"{bin_path}: not a weights file written by the converter (its {e}); regenerate the "
                                "model with qnn-onnx-converter") from None
    return {k: (e.offset, e.size) for k, e in found.items()}


def write_source(graph: Graph, cpp_path: str | os.PathLike[str], bin_path: str | os.PathLike[str]) -> Path:
    """Write the composition source of ``graph`` to ``cpp_path``, its static tensors' data referenced into
    ``bin_path`` (already written by :func:`openqnn.serialization.save_model`)."""
    cpp, binp = Path(cpp_path), Path(bin_path)
    offsets = weight_offsets(binp) if graph.static_tensors() else {}
    doc = graph_to_json(graph)
    meta = {"metadata": doc["metadata"], "converter_command": doc["converter_command"]}
    cpp_name, bin_name, stem, gname = (_comment(x) for x in (cpp.name, binp.name, cpp.stem, graph.name))
    lines = [
        f"// {cpp_name}: the graph {gname} for openqnn, written by its converter; edit it freely.",
        "// Compile it with its weights into a model library:",
        f"//   qnn-model-lib-generator -c {cpp_name} -b {bin_name} -t x86_64-linux-clang -l {stem} -o lib{stem}.so",
        "// Each line declares one tensor or one node, in order (openqnn/model_api.h says what every argument",
        f"// means). A static tensor's data is (offset, size) in bytes into {bin_name}.",
        "#include \"openqnn/model_api.h\"",
        "",
        "extern \"C\" OPENQNN_EXPORT int32_t openqnn_compose(const OpenqnnModelApi* api) {",
        "  openqnn::Model m(api);",
        f"  m.graph({c_string(graph.name)}, {_json_literal(meta)});",
        "",
        f"  // {len(graph.tensors)} tensors: name, type, data type, dims, quantization, layouts, data (offset, size)",
    ]
    for t in graph.tensors.values():
        entry = tensor_to_json(t)
        layouts = {k: entry[k] for k in ("src_axis_format", "axis_format") if k in entry}
        quant = entry["quant_params"] if t.encoding is not None else None
        if t.data is not None:
            if t.name not in offsets:
                raise InvalidModelError(f"{binp}: holds no data for static tensor {t.name!r}; write the model with "
                                        "openqnn.save (or qnn-onnx-converter) again")
            off, size = offsets[t.name]
            data = f"{off}u, {size}u"
        else:
            data = "OPENQNN_NO_DATA"
        dims = "{" + ", ".join(f"{d}u" for d in t.shape) + "}"
        lines.append(f"  m.tensor({c_string(t.name)}, \"{t.kind.value}\", \"{t.dtype.value}\", {dims}, "
                     f"{_json_literal(quant)}, {_json_literal(layouts)}, {data});")
    lines += ["", f"  // {len(graph.nodes)} nodes: name, package, type, inputs, outputs, params"]
    for n in graph.nodes:
        j = node_to_json(n)
        params = {k: j[k] for k in ("scalar_params", "tensor_params") if j[k]}
        ins = "{" + ", ".join(c_string(x) for x in n.inputs) + "}"
        outs = "{" + ", ".join(c_string(x) for x in n.outputs) + "}"
        lines.append(f"  m.node({c_string(n.name)}, {c_string(n.package)}, {c_string(n.op_type)}, {ins}, {outs}, "
                     f"{_json_literal(params)});")
    ins = "{" + ", ".join(c_string(x) for x in graph.inputs) + "}"
    outs = "{" + ", ".join(c_string(x) for x in graph.outputs) + "}"
    lines += ["", f"  m.io({ins}, {outs});", "  return m.status();", "}", ""]
    with atomic_write(cpp) as f:
        f.write("\n".join(lines))
    return cpp
