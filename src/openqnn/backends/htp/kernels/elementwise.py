"""htp integer kernels: elementwise (see registry.py for the conventions)."""
