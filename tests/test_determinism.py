# The same scenario and seed give a byte-identical trace (and diagram) in separate processes
# with different hash seeds, and in this process too; another seed gives another run. The
# processes are real `run.py` subprocesses: determinism inside one interpreter proves nothing
# about set or dict order under another PYTHONHASHSEED.

from __future__ import annotations

from pathlib import Path

from support import run_py

from trio_saga.commands import run_scenario
from trio_saga.diagram import mermaid
from trio_saga.scenario import Scenario


def run_chaos(out: Path, seed: int, hashseed: str) -> tuple[bytes, bytes, str]:
    trace, diagram = out / "trace.jsonl", out / "diagram.mmd"
    out.mkdir()
    done = run_py(
        *("scenario", "chaos", "--seed", str(seed), "--trace", str(trace)),
        *("--diagram", str(diagram), "--saga", "saga-3"),
        env={"TRIO_SAGA_SCENARIOS": None, "PYTHONHASHSEED": hashseed},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return trace.read_bytes(), diagram.read_bytes(), done.stdout


def without_wall_time(summary: str) -> str:
    """The summary less what may differ: wall time, and where the files went."""
    return "\n".join(
        line.split(" virtual,")[0] for line in summary.splitlines() if not line.startswith("wrote")
    )


def test_same_seed_gives_byte_identical_files_across_processes(tmp_path: Path) -> None:
    trace_a, diagram_a, out_a = run_chaos(tmp_path / "a", 7, "0")
    trace_b, diagram_b, out_b = run_chaos(tmp_path / "b", 7, "4242")
    assert len(trace_a.splitlines()) > 1000
    assert trace_a == trace_b
    assert diagram_a == diagram_b
    assert without_wall_time(out_a) == without_wall_time(out_b)
    # ... and this process, with whatever hash seed pytest got, agrees with both.
    here = run_scenario(Scenario.load("chaos"), 7).result
    assert here.trace_text().encode() == trace_a
    assert mermaid(here.trace, "saga-3").encode() == diagram_a


def test_different_seeds_give_different_runs() -> None:
    chaos = Scenario.load("chaos")
    texts = {run_scenario(chaos, seed).result.trace_text() for seed in (7, 8, 9)}
    assert len(texts) == 3


def test_the_default_seed_is_reproducible_in_process() -> None:
    chaos = Scenario.load("chaos")
    first, second = run_scenario(chaos).result, run_scenario(chaos).result
    assert first.trace_text() == second.trace_text()
    assert first.decisions == second.decisions
    assert first.fault_counts == second.fault_counts
