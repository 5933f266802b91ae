"""htp integer kernels: linear (see registry.py for the conventions)."""
