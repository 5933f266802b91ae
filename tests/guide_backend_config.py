"""The guide's ``backend_config.json`` (docs/backend-config.md, less its ``openqnn`` section), shared by the
tests that read it key by key and the fuzzer that mutates it."""

from __future__ import annotations

from typing import Any

GUIDE_BACKEND_CONFIG: dict[str, dict[str, Any]] = {
    "htp_config": {"device_id": 0, "performance_mode": "high_performance", "precision_mode": "int8", "vtcm_mb": 8,
                   "enable_dma": True},
    "gpu_config": {"device_id": 0, "performance_mode": "sustained_high_performance", "precision_mode": "fp16",
                   "enable_transform_optimization": True},
    "cpu_config": {"num_threads": 4, "performance_mode": "balanced", "enable_fast_math": True},
}
