"""The trio shell's former module, kept importable: the runtime is `trio_saga.sim.runtime`.
This module owns nothing and must never grow code."""

from __future__ import annotations

from .sim.runtime import Runtime

__all__ = ["Runtime"]
