"""Native work done in worker threads while a graph binds: weights that only the machine's kernels can lay out
(oneDNN's packed layouts, the int8 GEMM's panels) are made in parallel with the binding of the other steps.

Shared by the backends: a binder calls :func:`deferred`; the executable's binding loop runs inside
:func:`background_binding`, which ends when every job has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from openqnn.errors import InvalidModelError
from openqnn.workers import worker_pool

__all__ = ["BACKGROUND_BYTES", "background_binding", "deferred"]


BACKGROUND_BYTES = 1 << 18  # weights smaller than this are packed at once: a worker's handoff costs more
_JOBS: ContextVar[list[tuple[str, list[Any], Future[Any]]] | None] = ContextVar("openqnn_background_jobs", default=None)


def deferred(what: str, fn: Callable[..., Any], *args: Any) -> list[Any]:
    """``[fn(*args)]``: called now, or, inside :func:`background_binding`, in a worker thread, the list
    filled before the block ends (the kernel reads it at run time). For native work that releases the
    GIL -- oneDNN's weight packing -- so that binding a context overlaps it with the rest of binding.
    Called now, ``fn``'s exceptions reach the caller; in the background, the block's end raises them
    as one error naming ``what``."""
    jobs = _JOBS.get()
    if jobs is None:
        return [fn(*args)]
    cell: list[Any] = []
    jobs.append((what, cell, worker_pool().submit(fn, *args)))
    return cell


@contextmanager
def background_binding() -> Iterator[None]:
    """Binders inside this block may run :func:`deferred` work in worker threads; the block ends when all
    of it has (opening a context: its oneDNN weights are packed in parallel with the other steps' binding)."""
    jobs: list[tuple[str, list[Any], Future[Any]]] = []
    token = _JOBS.set(jobs)
    try:
        yield
    finally:
        _JOBS.reset(token)
        failed = None
        for what, cell, fut in jobs:
            try:
                cell.append(fut.result())
            except Exception as e:  # every job is waited for before raising (none outlives the block)
                failed = failed or (what, e)
    if failed is not None:
        what, err = failed
        raise InvalidModelError(f"{what}: {type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}; "
                                "prepare the model again on this machine (qnn-context-binary-generator)")
