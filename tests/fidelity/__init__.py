"""htp fidelity: openqnn's htp backend against Qualcomm's HTP simulator (the ``onnxruntime-qnn`` wheel).

``cases.py`` builds the models, ``harness.py`` runs one case on one arch, ``report.py`` prints the
table (``python -m tests.fidelity.report``), ``test_fidelity.py`` is the pytest entry. See
docs/htp-fidelity.md.
"""
