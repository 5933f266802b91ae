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
    "OpenQnnError",
    "UnsupportedOpError",
]


class OpenQnnError(Exception):
    """Base class of every error openqnn raises on bad input."""


class InvalidModelError(OpenQnnError):
    """A model file is malformed, truncated, or inconsistent (shapes, dtypes, missing tensors)."""


class ContextError(InvalidModelError):
    """A context binary is truncated, corrupt, of a newer format, or for another backend or arch."""


class ConversionError(OpenQnnError):
    """A source model could not be translated into the IR."""


class UnsupportedOpError(ConversionError):
    """A source op (or op version) has no translation, or a backend cannot run an IR op."""


class InvalidConfigError(OpenQnnError):
    """A flag, option or configuration file holds a value that is not allowed."""


class InputDataError(OpenQnnError):
    """Input data (raw files, input lists, feeds) does not fit the model."""
