"""The service's step: what one service does with the batch its runner hands it.

This module owns that one function, beside the participant whose commit it drives: commit each
message (the participant's inbox answers duplicates), maybe crash between the handler's effects
and the commit (undoing the step) or after committing, publish the outbox, acknowledge. It
must never import trio, know how the batch was chosen, or talk to anything but the `StepHost`
(a broker plus the runner's observation points), so every runner (the simulation, the stdio
node, a Redis runtime) steps a service the same way.
"""

from __future__ import annotations

from .broker import Batch, StepHost, publish_outbox
from .errors import where_note
from .events import Event
from .participant import Participant


def serve_batch(participant: Participant, batch: Batch, bus: StepHost) -> bool:
    """One service's step over a batch: commit each message, maybe crash, publish, ack.

    Returns False if the service crashed part-way: what is left of the batch is lost with its
    volatile state, and the broker redelivers it. Called by the service's own trio task.
    """
    name = participant.name
    for position, item in enumerate(batch):
        if isinstance(item, str):  # RELAY_OUTBOX
            publish_outbox(participant, bus)
            continue
        payload = item.payload
        ctx = bus.context()
        ctx.effects.step(name, payload.saga_id)  # whose effects these are
        # A snapshot to undo only when a crash could strike before this step's commit.
        snapshot = (
            participant.snapshot() if bus.may_crash_before_commit(name, payload.saga_id) else None
        )
        try:
            if isinstance(payload, Event):
                outcome = participant.receive(payload, ctx)
            else:  # the client's command
                reply, outcome = participant.execute(payload, ctx)
        except Exception as exc:  # a bug in the handler under test: say where it struck
            exc.add_note(where_note(name, item.what, payload.saga_id))
            raise
        if (
            snapshot is not None
            and outcome is not None
            and bus.crash_before_commit(name, payload.saga_id, outcome)
        ):  # the effects happened, the step is lost: the delivery comes again
            participant.undo(snapshot, payload, outcome)
            bus.lost(name, [d for d in batch[position:] if not isinstance(d, str)])
            return False
        if isinstance(payload, Event):
            bus.handled(name, payload, outcome)
        elif outcome is not None:
            bus.reply(item, reply, outcome)
        elif reply is None:
            bus.handled(name, payload, None)
        if outcome is None:
            bus.ack(item)
            continue
        produced = outcome
        if produced and bus.crash_after_commit(name, payload.saga_id, produced):
            bus.lost(name, [d for d in batch[position + 1 :] if not isinstance(d, str)])
            return False
        publish_outbox(participant, bus)
        bus.ack(item)
    return True
