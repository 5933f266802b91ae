"""Reading the text and JSON files users hand to openqnn, with one-line errors.

Every loader of a user-written file (backend configs, quantization overrides, input lists) reads it
through here, so that a folder instead of a file, an unreadable file, a file saved as UTF-16 or
latin-1, binary garbage, broken JSON or JSON nested without end all become one
:class:`~openqnn.errors.OpenQnnError` that names the file (and line) and says what to do, and never
a ``UnicodeDecodeError`` or ``RecursionError``. What the document *means* is checked by its loader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from openqnn.errors import InvalidConfigError, OpenQnnError

__all__ = ["MAX_JSON_DEPTH", "decode_text", "read_json", "read_text"]

# deepest nesting of arrays / objects a config or encodings file may use (they need 4 at most)
MAX_JSON_DEPTH = 32


def read_text(path: str | os.PathLike[str], what: str, error: type[OpenQnnError] = InvalidConfigError) -> str:
    """The UTF-8 text of the file ``path`` (``what``: how errors name it, e.g. ``--input_list x.txt``)."""
    p = Path(path)
    try:
        if p.is_dir():
            raise error(f"{what}: is a folder; give the path of a file")
        if not p.is_file():
            raise error(f"{what}: no such file")
        data = p.read_bytes()
    except OSError as e:
        raise error(f"{what}: cannot be read ({e.strerror or e}); check the path and its permissions") from None
    return decode_text(data, what, error)


def decode_text(data: bytes, what: str, error: type[OpenQnnError] = InvalidConfigError) -> str:
    """``data`` as UTF-8 (a leading byte-order mark is dropped); other encodings and binary data are an
    error naming the line."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or _looks_utf16(data):
        raise error(f"{what}: is saved as UTF-16; save it as UTF-8 text")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise error(f"{what}:{line}: holds a NUL byte (binary data?); it must be a UTF-8 text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise error(f"{what}:{line}: byte 0x{data[e.start]:02x} is not UTF-8 (saved as latin-1 or another "
                    "encoding?); save the file as UTF-8") from None


def read_json(path: str | os.PathLike[str], what: str | None = None,
              error: type[OpenQnnError] = InvalidConfigError) -> Any:
    """Parse the JSON file ``path``: standard JSON (no NaN / Infinity literals), nested at most
    ``MAX_JSON_DEPTH`` deep; every failure is one ``error`` naming the file."""
    what = what or str(path)
    text = read_text(path, what, error)
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except _ConstantError as e:
        raise error(f"{what}: {e} is not valid JSON; write a finite number") from None
    except json.JSONDecodeError as e:
        raise error(f"{what}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); fix or regenerate "
                    "the file") from None
    except RecursionError:
        raise error(f"{what}: JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)") from None
    except ValueError as e:  # e.g. an integer literal of more than 4300 digits
        raise error(f"{what}: not valid JSON ({e})") from None
    if _depth(doc) > MAX_JSON_DEPTH:
        raise error(f"{what}: JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    return doc


def _looks_utf16(data: bytes) -> bool:
    """UTF-16 without a byte-order mark: ASCII text leaves every other byte zero."""
    head = data[:4096]
    if len(head) < 2:
        return False
    even, odd = head[0::2], head[1::2]
    return max(even.count(0) / len(even), odd.count(0) / max(len(odd), 1)) > 0.9 and min(even.count(0), odd.count(0)) == 0


class _ConstantError(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _ConstantError(name)


def _depth(doc: Any) -> int:
    """Nesting depth of arrays / objects, without recursion."""
    deepest = 0
    stack = [(doc, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, d)
            if d <= MAX_JSON_DEPTH:
                stack.extend((v, d + 1) for v in node if isinstance(v, (dict, list)))
    return deepest
