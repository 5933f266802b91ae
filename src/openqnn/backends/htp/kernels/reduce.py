"""htp integer kernels: reduce (see registry.py for the conventions)."""
