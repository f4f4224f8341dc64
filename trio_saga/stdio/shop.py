"""The shop saga's names the stdio protocol speaks (DESIGN §5 is the seed's shop protocol:
reserve_inventory to inventory, fail_inventory / fail_payment / fail_shipping flags).

This module owns nothing but these imports: every name of the saga's core that the stdio
package uses comes through here. It must never define behaviour.
"""

from __future__ import annotations

from ..participant import Participant, SagaService
from ..shop import SHOP
from ..shop.events import ReservationAccepted, ReservationRefused, ReserveInventory
from ..shop.services import default_services

#: The steps a request flag (`fail_<step>`) can force to fail.
STEPS = SHOP.step_names

__all__ = [
    "SHOP",
    "STEPS",
    "Participant",
    "ReservationAccepted",
    "ReservationRefused",
    "ReserveInventory",
    "SagaService",
    "default_services",
]
