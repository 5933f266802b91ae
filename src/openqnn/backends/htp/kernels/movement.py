"""htp integer kernels: movement (see registry.py for the conventions)."""
