"""qnn-net-run's file formats: input lists, raw tensors, Result_<i>/ output folders.

An input list has one inference per line: raw file paths in graph-input order, or
``name:=path`` pairs. A first line starting with ``#`` names the outputs to write. Raw files are
headerless float32, converted to each input's own type (token ids too), or, with native input
files, the input's own type as is.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openqnn.errors import InputDataError, InvalidConfigError
from openqnn.fileio import read_text
from openqnn.ir.tensor import Tensor

__all__ = ["InputList", "ResultFolders", "read_input_list", "read_raw", "sanitize", "write_raw"]


@dataclass
class InputList:
    """Parsed input list: per inference, input name -> raw file path."""

    path: Path
    inferences: list[dict[str, Path]]
    output_names: list[str] = field(default_factory=list)


def read_input_list(path: str | os.PathLike[str], inputs: list[Tensor]) -> InputList:
    """Parse and check an input list: every file exists; names and counts fit the graph's inputs."""
    p = Path(path)
    names = [t.name for t in inputs]
    lines = [ln.strip() for ln in read_text(p, f"--input_list {p}", InputDataError).splitlines()]
    out_names: list[str] = []
    inferences: list[dict[str, Path]] = []
    for lineno, line in enumerate(lines, 1):
        if not line:
            continue
        if line.startswith("#"):
            if not inferences and not out_names:
                out_names = [n for n in re.split(r"[\s,]+", line[1:].strip()) if n]
            continue
        if line.startswith("%"):  # QNN: output names for the next inference; treated as a comment
            continue
        tokens = line.split()
        entry: dict[str, Path] = {}
        if any(":=" in t for t in tokens):
            for tok in tokens:
                if ":=" not in tok:
                    raise InputDataError(f"{p}:{lineno}: mixes name:=path pairs with bare paths ('{tok}')")
                name, file = tok.split(":=", 1)
                if not name or not file:
                    raise InputDataError(f"{p}:{lineno}: '{tok}' is not a name:=path pair; write "
                                         f"<input name>:=<raw file>")
                if name in entry:
                    raise InputDataError(f"{p}:{lineno}: input '{name}' is given twice")
                if name not in names:
                    raise InputDataError(f"{p}:{lineno}: unknown input '{name}'; the model's inputs are "
                                         f"{', '.join(names)}")
                entry[name] = _resolve(file, p, lineno)
        else:
            if len(tokens) != len(names):
                raise InputDataError(f"{p}:{lineno}: {len(tokens)} file(s) for {len(names)} input(s) "
                                     f"({', '.join(names)}); give one path per input, in that order")
            entry = {n: _resolve(f, p, lineno) for n, f in zip(names, tokens)}
        missing = [n for n in names if n not in entry]
        if missing:
            raise InputDataError(f"{p}:{lineno}: no file for input(s) {', '.join(missing)}")
        inferences.append(entry)
    if not inferences:
        raise InputDataError(f"--input_list {p}: holds no inference lines")
    return InputList(p, inferences, out_names)


def _resolve(file: str, list_path: Path, lineno: int) -> Path:
    f = Path(file)
    try:
        if f.is_file():
            return f
        beside = list_path.parent / f
        if not f.is_absolute() and beside.is_file():
            return beside
        if f.is_dir() or beside.is_dir():
            raise InputDataError(f"{list_path}:{lineno}: {file} is a folder; give the path of a raw file")
    except OSError as e:  # a name too long for the file system, a loop of links
        raise InputDataError(f"{list_path}:{lineno}: input file {file} cannot be opened ({e.strerror or e})") from None
    raise InputDataError(f"{list_path}:{lineno}: input file {file} does not exist; paths are relative to the "
                         "working folder or to the input list's folder")


def read_raw(path: Path, tensor: Tensor, native: bool, quantized: bool = False) -> np.ndarray:
    """A raw file as ``tensor``'s type: float32 converted, or the native type as is. With ``quantized``
    (a quantized input on a fixed-point backend), native files hold the encoding's integers."""
    file_dtype: np.dtype
    if native and quantized and tensor.encoding is not None:
        file_dtype = np.dtype(np.uint8 if tensor.encoding.bitwidth == 8 else np.uint16)
    else:
        file_dtype = tensor.dtype.numpy if native else np.dtype(np.float32)
    want = tensor.size * file_dtype.itemsize
    try:
        size = path.stat().st_size
        if size == want:
            data = np.fromfile(path, dtype=file_dtype)
    except OSError as e:
        raise InputDataError(f"{path}: cannot be read ({e.strerror or e}); check the path and its permissions") from None
    if size != want or data.size != tensor.size:
        raise InputDataError(
            f"{path}: holds {size} bytes, but input '{tensor.name}' {tensor.shape} needs {want} "
            f"({tensor.size} x {file_dtype.name}{'' if native else ', raw files are float32 unless --use_native_input_files'})"
        )
    data = data.reshape(tensor.shape)
    if native and quantized:
        return data
    if not native and tensor.dtype.numpy != np.float32:
        if tensor.dtype.numpy.kind in "iub":
            if not np.all(np.isfinite(data)):
                raise InputDataError(f"{path}: non-finite values for integer input '{tensor.name}'")
            info = np.iinfo(tensor.dtype.numpy) if tensor.dtype.numpy.kind in "iu" else None
            if info is not None and (data.min(initial=0) < info.min or data.max(initial=0) > info.max):
                raise InputDataError(f"{path}: values outside the {tensor.dtype.numpy.name} range of input "
                                     f"'{tensor.name}' ([{info.min}, {info.max}])")
        data = data.astype(tensor.dtype.numpy)
    return data


_NON_WORD = re.compile(r"\W")


def sanitize(name: str) -> str:
    """Output file stem of a tensor: non-word characters become ``_``."""
    return _NON_WORD.sub("_", name)


def write_raw(path: Path, data: np.ndarray) -> None:
    """Write through a temporary name, so a failure never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    np.asarray(data, order="C").tofile(tmp)
    os.replace(tmp, path)


class ResultFolders:
    """``<output_dir>/Result_<i>/<tensor>.raw``, all or nothing: files go to a staging folder beside
    ``output_dir`` and move into it only when the run ends well; after an error nothing is left.

    >>> with ResultFolders(Path("out")) as results:          # doctest: +SKIP
    ...     results.write(0, "logits", np.zeros(10, np.float32))
    """

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self._stage = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
        self._made: list[Path] = []  # parent folders this writer created, removed again on failure

    def __enter__(self) -> ResultFolders:
        return self

    def write(self, index: int, stem: str, data: np.ndarray) -> None:
        """Stage ``Result_<index>/<stem>.raw``."""
        with self._staging("results"):
            write_raw(self._stage / f"Result_{index}" / f"{stem}.raw", data)

    def write_text(self, name: str, text: str) -> None:
        """Stage ``<output_dir>/<name>`` (a file beside the result folders, e.g. partition_report.json)."""
        with self._staging(name):
            self._stage.mkdir(parents=True, exist_ok=True)
            (self._stage / name).write_text(text)

    @contextlib.contextmanager
    def _staging(self, what: str) -> Iterator[None]:
        """A write into the staging folder: the parent folders it will create are remembered (removed again on
        failure), and an OSError is an :class:`InvalidConfigError` saying ``what`` could not be written."""
        try:
            if not self._made and not self._stage.exists():
                self._made = [q for q in reversed([self._stage, *self._stage.parents]) if not q.exists()]
            yield
        except OSError as e:
            raise InvalidConfigError(f"--output_dir {self.out_dir}: cannot write {what} ({e.strerror or e}); give "
                                     "a folder you can write to") from None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._commit()
            except OSError as e:
                self._discard()
                raise InvalidConfigError(f"--output_dir {self.out_dir}: cannot move results into place "
                                         f"({e.strerror or e})") from None
        else:
            self._discard()

    def _commit(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not self._stage.is_dir():
            return
        for folder in sorted(self._stage.iterdir()):
            if folder.is_file():
                os.replace(folder, self.out_dir / folder.name)
                continue
            target = self.out_dir / folder.name
            target.mkdir(exist_ok=True)
            for f in folder.iterdir():
                os.replace(f, target / f.name)
        shutil.rmtree(self._stage)

    def _discard(self) -> None:
        shutil.rmtree(self._stage, ignore_errors=True)
        for q in reversed(self._made):  # deepest first; only the empty ones
            try:
                q.rmdir()
            except OSError:
                break
