"""htp integer kernels: conv (see registry.py for the conventions)."""
