"""What ``performance_mode`` (QNN's power/performance profile, ``perf_profile``) means on a host: a thread
count and a scheduling priority.

On a phone the mode sets the NPU's clocks and voltages. openqnn runs on the host's CPU, where the matching
knobs are how many threads the kernels use and how the OS schedules the process:

=============================================================  ===================  ==========
mode                                                           threads              niceness
=============================================================  ===================  ==========
default                                                        left as they are     +0
burst, sustained_high_performance, high_performance            every core           +0
balanced                                                       half the cores       +0
low_balanced                                                   half the cores       +5
high_power_saver                                               a quarter            +5
power_saver                                                    1                    +10
low_power_saver                                                1                    +15
extreme_power_saver                                            1                    +19
=============================================================  ===================  ==========

An explicit thread count (``num_threads``, ``hvx_threads``, ``Session(num_threads=)``) wins over the mode's.
Niceness is the process's (POSIX ``nice``) and only ever raised, to the mode's value: an unprivileged process
cannot lower it again, so a power-saving mode lasts for the rest of the process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["MODE_POLICIES", "ThreadPolicy", "apply_thread_policy", "thread_policy"]

# mode -> (share of the cores, or None: leave the count; niceness)
MODE_POLICIES: dict[str, tuple[float | None, int]] = {
    "default": (None, 0),
    "burst": (1.0, 0),
    "sustained_high_performance": (1.0, 0),
    "high_performance": (1.0, 0),
    "balanced": (0.5, 0),
    "low_balanced": (0.5, 5),
    "high_power_saver": (0.25, 5),
    "power_saver": (0.0, 10),
    "low_power_saver": (0.0, 15),
    "extreme_power_saver": (0.0, 19),
}


@dataclass(frozen=True)
class ThreadPolicy:
    """How a backend runs on the host: ``threads`` (None: leave the count as it is) and the process's
    ``niceness`` (at least this)."""

    threads: int | None
    niceness: int


def thread_policy(mode: str, num_threads: int | None = None, cores: int | None = None) -> ThreadPolicy:
    """The policy of ``performance_mode`` ``mode`` on a host of ``cores`` cores (this one's by default); an
    explicit ``num_threads`` wins over the mode's count."""
    share, niceness = MODE_POLICIES[mode]
    cores = cores or os.cpu_count() or 1
    threads = num_threads if num_threads else None if share is None else max(1, int(cores * share))
    return ThreadPolicy(threads, niceness)


def apply_thread_policy(policy: ThreadPolicy) -> None:
    """Set torch's thread count and raise the process's niceness to the policy's (never lowered)."""
    if policy.threads:
        import torch

        if torch.get_num_threads() != policy.threads:
            torch.set_num_threads(policy.threads)
    if policy.niceness and hasattr(os, "nice"):
        current = os.nice(0)
        if current < policy.niceness:
            os.nice(policy.niceness - current)
