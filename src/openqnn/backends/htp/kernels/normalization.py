"""htp integer kernels: normalization (see registry.py for the conventions)."""
