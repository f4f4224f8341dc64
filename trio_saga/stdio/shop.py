"""The shop saga's names the stdio protocol speaks (DESIGN §5 is the seed's shop protocol:
reserve_inventory to inventory, fail_inventory / fail_payment / fail_shipping flags).

This module owns nothing but these imports: every name of the saga's core that the stdio
package uses comes through here, so that re-pointing them (issue 8 moves the shop saga to
trio_saga/shop.py) is an edit of this one file. It must never define behaviour.
"""

from __future__ import annotations

from ..events import STEPS, ReservationAccepted, ReservationRefused, ReserveInventory
from ..services import Participant, SagaService, default_services

__all__ = [
    "STEPS",
    "Participant",
    "ReservationAccepted",
    "ReservationRefused",
    "ReserveInventory",
    "SagaService",
    "default_services",
]
