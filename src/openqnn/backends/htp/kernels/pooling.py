"""htp integer kernels: pooling (see registry.py for the conventions)."""
