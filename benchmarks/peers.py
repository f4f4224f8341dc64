#!/usr/bin/env python3
# The peer benchmark of issue 9: it owns the one workload both simulators run, how each side
# is timed, and the JSON it prints last. It must never pass or fail anything on timing, and
# never run one side with less checking than the other: both check the same invariants at the
# end of every run. detangle (PyPI, 0.1.0) is a benchmark-only dependency: `make bench-peers`
# installs it into the venv; nothing else imports this file.
"""trio-saga against detangle 0.1.0 on the same saga workload, alternated seed by seed.

    python benchmarks/peers.py [--seeds N] [--sagas N] [--json]

The workload: 100 sagas a run through four hosts (orders, inventory, payment, shipping), a
fifth of them with a forced payment failure (compensated: the stock is released), 5% of
messages dropped and 5% duplicated, a latency of 0.5-5 ms of virtual time per message in one
of two models: `stepped` (one of 0.5/2/3.5/5 ms, detangle's default network) and `uniform`
(continuous over 0.5-5 ms; detangle draws it with one step per µs). trio-saga's side is the
shop saga with `drop`, `duplicate` and `delay` faults (its ack timeout redelivers after
0.25 s); detangle's is a choreography over its mailboxes with idempotent consumers (a repeat
re-sends what the first copy produced) and an orders driver that re-sends every 0.25 virtual s
until each saga ends. Both check at the end: every saga ended as planned, each completed one
charged and shipped once, each compensated one charged nothing and its stock back.
The last line is one JSON object with `ratio_vs_detangle_stepped` and
`ratio_vs_detangle_uniform` (trio-saga runs/s / detangle runs/s).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import detangle

from faults import parse_fault
from trio_saga.events import MAX_AMOUNT
from trio_saga.shop.services import Inventory, PaymentService, ShippingService
from trio_saga.simulation import SagaOrder, Simulation, simulate

LATENCY_MIN_S = 0.0005
LATENCY_MAX_S = 0.005
DROP = 0.05
DUPLICATE = 0.05
FAIL_EVERY = 5  # every fifth saga's payment is forced to fail
RESEND_S = 0.25
STOCK = 10**9
AMOUNT = 10.0

#: latency model -> (trio-saga's delay spec, detangle's latency_steps)
MODELS = {
    "stepped": (f"delay:dist=steps,min={LATENCY_MIN_S},max={LATENCY_MAX_S},steps=4", 4),
    "uniform": (
        f"delay:dist=uniform,min={LATENCY_MIN_S},max={LATENCY_MAX_S}",
        round((LATENCY_MAX_S - LATENCY_MIN_S) * 1_000_000) + 1,
    ),
}


class PeerError(Exception):
    """A run ended wrong: the comparison would mean nothing."""


def failing(n: int) -> bool:
    return n % FAIL_EVERY == 0


# -- trio-saga ----------------------------------------------------------------------------------


def trio_saga_run(sagas: int, seed: int, model: str) -> None:
    specs = (f"drop:p={DROP}", f"duplicate:p={DUPLICATE}", MODELS[model][0])
    orders = [
        SagaOrder(
            saga_id=f"saga-{n}",
            fail={"payment"} if failing(n) else (),
            fields={"sku": "sku-1", "quantity": 1, "amount": AMOUNT},
        )
        for n in range(1, sagas + 1)
    ]
    result = simulate(
        Simulation(
            orders=orders,
            state={"default_stock": STOCK, "funds": MAX_AMOUNT},
            faults=[parse_fault(spec) for spec in specs],
            seed=seed,
        )
    )
    if result.violations or result.stopped_early:
        raise PeerError(f"trio-saga seed {seed}: {result.violations[:1]}")
    for n in range(1, sagas + 1):
        want = "compensated" if failing(n) else "completed"
        if result.status(f"saga-{n}") != want:
            raise PeerError(f"trio-saga seed {seed}: saga-{n} {result.status(f'saga-{n}')}")
    inventory = result.service("inventory", Inventory)
    payment = result.service("payment", PaymentService)
    shipping = result.service("shipping", ShippingService)
    completed = sagas - sagas // FAIL_EVERY
    charged = (payment.charged_cents - payment.refunded_cents) // round(AMOUNT * 100)
    check_books(
        f"trio-saga seed {seed}",
        stock_left=inventory.stock["sku-1"],
        charged=charged,
        shipped=sum(1 for shipment in shipping.shipments.values() if shipment is not None),
        completed=completed,
    )


def check_books(who: str, *, stock_left: int, charged: int, shipped: int, completed: int) -> None:
    if stock_left != STOCK - completed or charged != completed or shipped != completed:
        raise PeerError(
            f"{who}: stock {STOCK - stock_left} taken, {charged} charged, {shipped} shipped,"
            f" for {completed} completed sagas"
        )


# -- detangle -----------------------------------------------------------------------------------


class _Host:
    """One service on a detangle host: an idempotent consumer. The first copy of a message
    changes state and records what it sends; a repeat re-sends that without changing state."""

    def __init__(self, name: str, handle: Callable[[dict[str, Any]], list[tuple[str, Any]]]):
        self.name = name
        self.handle = handle
        self.seen: dict[tuple[str, str], list[tuple[str, Any]]] = {}

    async def serve(self, box: Any) -> None:
        while True:
            message, _ = await box.recv()
            key = (message["type"], message["saga"])
            sent = self.seen.get(key)
            if sent is None:
                sent = self.seen[key] = self.handle(message)
            for dest, out in sent:
                box.send((dest, 1), out)


async def detangle_saga_run(sagas: int) -> dict[str, Any]:
    net = detangle.network()
    stock = {"sku-1": STOCK}
    reserved: dict[str, int] = {}
    charges: dict[str, float] = {}
    shipments: set[str] = set()
    ended: dict[str, str] = {}

    def inventory(m: dict[str, Any]) -> list[tuple[str, Any]]:
        saga = m["saga"]
        if m["type"] == "reserve":
            stock["sku-1"] -= 1
            reserved[saga] = 1
            return [("payment", {"type": "reserved", "saga": saga, "amount": m["amount"]})]
        stock["sku-1"] += reserved.pop(saga)  # payment_failed: compensate
        return [("orders", {"type": "released", "saga": saga})]

    def payment(m: dict[str, Any]) -> list[tuple[str, Any]]:
        saga = m["saga"]
        if failing(int(saga.rpartition("-")[2])):
            return [("inventory", {"type": "payment_failed", "saga": saga})]
        charges[saga] = m["amount"]
        return [("shipping", {"type": "charged", "saga": saga})]

    def shipping(m: dict[str, Any]) -> list[tuple[str, Any]]:
        shipments.add(m["saga"])
        return [("orders", {"type": "shipped", "saga": m["saga"]})]

    for name, handle in (("inventory", inventory), ("payment", payment), ("shipping", shipping)):
        box = net.mailbox(1, host=name)
        detangle.spawn(_Host(name, handle).serve(box), host=name)
    orders = net.mailbox(1, host="orders")
    all_ended = asyncio.Event()

    async def listen() -> None:
        while True:
            message, _ = await orders.recv()
            kind = "completed" if message["type"] == "shipped" else "compensated"
            ended.setdefault(message["saga"], kind)
            if len(ended) == sagas:
                all_ended.set()

    async def drive() -> None:
        ids = [f"saga-{n}" for n in range(1, sagas + 1)]
        while True:
            for saga in ids:
                if saga not in ended:
                    orders.send(("inventory", 1), {"type": "reserve", "saga": saga, "amount": 10})
            await asyncio.sleep(RESEND_S)

    tasks = [detangle.spawn(listen(), host="orders"), detangle.spawn(drive(), host="orders")]
    await all_ended.wait()
    for task in tasks:
        task.cancel()
    return {
        "ended": ended,
        "stock": stock["sku-1"],
        "charged": len(charges),
        "shipped": len(shipments),
    }


def detangle_run(sagas: int, seed: int, model: str) -> None:
    net: dict[str, Any] = {
        "drop": DROP,
        "duplicate": DUPLICATE,
        "latency": (LATENCY_MIN_S, LATENCY_MAX_S),
        "latency_steps": MODELS[model][1],
    }
    outcome = detangle.run(lambda: detangle_saga_run(sagas), seed=seed, net=net)
    for n in range(1, sagas + 1):
        want = "compensated" if failing(n) else "completed"
        if outcome["ended"].get(f"saga-{n}") != want:
            raise PeerError(f"detangle seed {seed}: saga-{n} {outcome['ended'].get(f'saga-{n}')}")
    check_books(
        f"detangle seed {seed}",
        stock_left=outcome["stock"],
        charged=outcome["charged"],
        shipped=outcome["shipped"],
        completed=sagas - sagas // FAIL_EVERY,
    )


# -- the comparison -----------------------------------------------------------------------------


def compare(seeds: int, sagas: int, model: str) -> dict[str, float]:
    """Alternate the two seed by seed (so load on a shared machine hits both alike)."""
    spent = {"trio_saga": 0.0, "detangle": 0.0}
    sides = {"trio_saga": trio_saga_run, "detangle": detangle_run}
    for seed in range(1, seeds + 1):
        order = ("trio_saga", "detangle") if seed % 2 else ("detangle", "trio_saga")
        for side in order:
            gc.collect()
            start = time.perf_counter()
            sides[side](sagas, seed, model)
            spent[side] += time.perf_counter() - start
    figures = {f"{side}_runs_per_s_{model}": seeds / wall for side, wall in spent.items()}
    for side in sides:
        figures[f"{side}_sagas_per_s_{model}"] = figures[f"{side}_runs_per_s_{model}"] * sagas
    figures[f"ratio_vs_detangle_{model}"] = (
        figures[f"trio_saga_runs_per_s_{model}"] / figures[f"detangle_runs_per_s_{model}"]
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="peers.py", description=__doc__)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--sagas", type=int, default=100)
    parser.add_argument("--big", type=int, default=1000, help="sagas of the one big run")
    args = parser.parse_args(argv)
    for side in (trio_saga_run, detangle_run):  # warm both: imports, first-call costs
        side(10, 0, "stepped")
    figures: dict[str, Any] = {"seeds": args.seeds, "sagas": args.sagas}
    for model in MODELS:
        print(f"peers: {model} ...", file=sys.stderr, flush=True)
        figures.update(compare(args.seeds, args.sagas, model))
    if args.big:
        big = compare(1, args.big, "uniform")
        figures[f"trio_saga_sagas_per_s_{args.big}"] = big["trio_saga_sagas_per_s_uniform"]
        figures[f"detangle_sagas_per_s_{args.big}"] = big["detangle_sagas_per_s_uniform"]
    for key, value in figures.items():
        if isinstance(value, float):
            print(f"{key:40} {value:,.3f}", file=sys.stderr)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
