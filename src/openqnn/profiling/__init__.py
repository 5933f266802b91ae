"""Profiling and diagnosis: profile logs and their statistics, exporters (text, CSV, Chrome trace, HTML), the
platform validator, the accuracy debugger, and the guide's profiling classes.

Only the log format and the recorder are imported here (the runtime uses them); the tools live in their modules:
:mod:`~openqnn.profiling.viewer`, :mod:`~openqnn.profiling.report`, :mod:`~openqnn.profiling.platform`,
:mod:`~openqnn.profiling.accuracy`, :mod:`~openqnn.profiling.guide`.
"""

from openqnn.profiling.log import LOG_NAME, VERSION, ProfileLog, read_profile
from openqnn.profiling.stats import LatencyStats, latency_stats

__all__ = ["LOG_NAME", "VERSION", "LatencyStats", "ProfileLog", "latency_stats", "read_profile"]
