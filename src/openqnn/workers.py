"""One process-wide pool of worker threads, for native work that releases the GIL (a context's checksum,
oneDNN's weight packing while a context binds).

A pool's threads do not survive ``fork``: a child process (multiprocessing's default on Linux, data
loader workers) that reused its parent's pool would wait forever for work nobody runs. :func:`worker_pool`
makes a new pool in a process that did not make the current one.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["worker_pool"]

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pid = -1


def worker_pool() -> ThreadPoolExecutor:
    """The pool (up to 4 threads, at most one per CPU), made on first use in this process."""
    global _pool, _pid
    with _lock:
        if _pool is None or _pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="openqnn")
            _pid = os.getpid()
        return _pool
