"""The model definitions live in benchmarks/zoo.py (shared with ``python -m benchmarks``): put the
repository root on sys.path so ``benchmarks`` imports from the tests."""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
