"""The exception hierarchy.

Every error a user can cause derives from :class:`OpenQnnError`. Messages name the object at fault
(file, node, tensor, flag), list valid alternatives where there are any, and say what to do next.
The CLI prints ``error: <message>`` for these and exits non-zero.
"""

from __future__ import annotations

__all__ = [
    "ContextError",
    "ConversionError",
    "InputDataError",
    "InvalidConfigError",
    "InvalidModelError",
    "LibraryBuildError",
    "ModelLibraryError",
    "OpenQnnError",
    "UnsupportedOpError",
    "one_line",
]


class OpenQnnError(Exception):
    """Base class of every error openqnn raises on bad input.

    Its message is one line: control characters (a newline in a tensor name read from a damaged file,
    say) are shown escaped, so the CLI's ``error: ...`` line stays one line whatever the input holds."""

    def __init__(self, *args: object):
        if len(args) == 1 and isinstance(args[0], str):
            args = (one_line(args[0]),)
        super().__init__(*args)


def one_line(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x00``, ...)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class InvalidModelError(OpenQnnError):
    """A model file is malformed, truncated, or inconsistent (shapes, dtypes, missing tensors)."""


class ContextError(InvalidModelError):
    """A context binary is truncated, corrupt, of a newer format, or for another backend or arch."""


class ModelLibraryError(InvalidModelError):
    """A model library is of another architecture or tool, truncated, stripped of its entry points, or of
    another ABI version, or its composition failed."""


class LibraryBuildError(OpenQnnError):
    """A model library could not be built: no compiler for the target, or the source does not compile."""


class ConversionError(OpenQnnError):
    """A source model could not be translated into the IR. ``node_name``: the source node at fault, where
    the frontend knows it (a frontend built on another, PyTorch's on ONNX's, reads it to name the layer)."""

    node_name: str | None = None


class UnsupportedOpError(ConversionError):
    """A source op (or op version) has no translation, or a backend cannot run an IR op."""


class InvalidConfigError(OpenQnnError):
    """A flag, option or configuration file holds a value that is not allowed."""


class InputDataError(OpenQnnError):
    """Input data (raw files, input lists, feeds) does not fit the model."""
