"""htp integer kernels: lut (see registry.py for the conventions)."""
