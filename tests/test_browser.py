# The HTML reports in a real browser: Debian's headless chromium loads the file with no network
# and dumps the DOM after the inline JavaScript ran, so these tests prove the timelines are
# drawn, not just that the data is in the file; driven over the DevTools protocol (tests/cdp.py)
# it clicks sagas and measures what it drew. chromium comes from .ci/install-browser; without it
# these tests fail (they never skip), saying how to install it.

from __future__ import annotations

import itertools
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from cdp import FLAGS, Browser, chromium
from support import run_py

from trio_saga.explore import explore
from trio_saga.report import write_explore_report, write_report
from trio_saga.scenario import Scenario
from trio_saga.simulation import simulate

CUT_SHORT = (Path(__file__).parent / "scenarios" / "cut-short.toml").read_text()


def rendered(page: Path, tmp_path: Path) -> str:
    """The DOM of `page` after its scripts ran, as chromium serialises it."""
    done = subprocess.run(
        [
            chromium(),
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "</html>" in done.stdout, done.stderr[-2000:]
    return done.stdout


class Elements(HTMLParser):
    """Every element's tag and attributes, in document order."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [a for _, a in self.found if name in a.get("class", "").split()]

    def by_id(self, ident: str) -> dict[str, str]:
        matches = [a for _, a in self.found if a.get("id") == ident]
        assert len(matches) == 1, ident
        return matches[0]


def test_the_browser_draws_every_saga_of_a_120_saga_chaos_run(tmp_path: Path) -> None:
    scenario = Scenario.load("chaos")
    result = simulate(scenario.simulation(1))
    sagas = [record.saga_id for record in result.saga_log]
    assert len(sagas) >= 100
    page = tmp_path / "chaos.html"
    write_report(page, "chaos (seed 1)", result, scenario)
    dom = Elements(rendered(page, tmp_path))

    body = next(a for tag, a in dom.found if tag == "body")
    assert body["data-rendered"] == str(len(sagas))  # set by the script when it finished
    rows = dom.with_class("saga-row")
    assert [row["data-saga"] for row in rows] == sagas
    statuses = {row["data-saga"]: row["data-status"] for row in rows}
    for record in result.saga_log:
        assert statuses[record.saga_id] == record.status
    # One saga drawn in full: four lanes, its markers, its deliveries as arrows, and the crash
    # and partition windows of chaos drawn on the service lanes.
    detail = dom.by_id("detail-svg")
    assert detail["data-saga"] in sagas
    assert [lane["data-lane"] for lane in dom.with_class("detail-lane")] == [
        "client",
        "inventory",
        "payment",
        "shipping",
    ]
    assert dom.with_class("msg")
    kinds = {a["data-kind"] for a in dom.with_class("mark")}
    assert "publish" in kinds
    assert kinds & {"drop", "duplicate", "delay", "reorder", "hold", "fail", "lost"}
    assert dom.with_class("w-partition")
    assert dom.with_class("w-crash")
    assert len(dom.with_class("invariant")) == 5
    assert len(dom.with_class("record")) > 5


def test_the_browser_shows_which_invariant_failed_and_for_which_saga(tmp_path: Path) -> None:
    scenario = Scenario.from_toml("cut-short", CUT_SHORT)
    result = simulate(scenario.simulation(1))
    stuck = sorted({v.saga_id for v in result.violations if v.saga_id})
    assert stuck
    page = tmp_path / "cut.html"
    write_report(page, "cut short", result, scenario)
    markup = rendered(page, tmp_path)
    dom = Elements(markup)
    results = [a["data-ok"] for a in dom.with_class("invariant")]
    assert results == ["false", "true", "true", "true", "true"]
    # The page opens on the first saga that broke an invariant.
    assert dom.by_id("detail-svg")["data-saga"] == stuck[0]
    assert "breaks invariant 1" in markup
    violated = [r["data-saga"] for r in dom.with_class("saga-row") if r["data-status"] == "stuck"]
    assert violated == stuck


def test_the_browser_draws_the_explore_matrix_and_the_failing_seeds(tmp_path: Path) -> None:
    scenario = Scenario.from_toml("cut-short", CUT_SHORT)
    result = explore(scenario, 3, out=tmp_path / "replays")
    page = tmp_path / "explore.html"
    write_explore_report(page, "explore cut-short", result)
    dom = Elements(rendered(page, tmp_path))
    rows = [a["data-row"] for a in dom.with_class("matrix-row")]
    assert rows == [row for row, _ in result.matrix()]
    assert [a["data-row"] for a in dom.with_class("bar-row")] == rows
    assert [a["data-seed"] for a in dom.with_class("failing-seed")] == ["0", "1", "2"]


#: Opens saga %s in the detail view by clicking its row, then measures every text the detail
#: drew, and the drawing itself, as the browser laid them out.
MEASURE = """(function (id) {
  document.querySelector('.saga-row[data-saga="' + id + '"]')
    .dispatchEvent(new MouseEvent("click", {bubbles: true}));
  var svg = document.getElementById("detail-svg");
  function box(e) { var r = e.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom]; }
  return {saga: svg.getAttribute("data-saga"), svg: box(svg),
    texts: Array.prototype.map.call(svg.querySelectorAll("text"), function (t) {
      return {text: t.textContent, cls: t.getAttribute("class") || "", box: box(t)};
    })};
})(%s)"""


def embedded(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def intersect(a: list[float], b: list[float]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_no_two_labels_of_a_sagas_detail_intersect_in_a_chaos_run(tmp_path: Path) -> None:
    page = tmp_path / "chaos.html"
    done = run_py("scenario", "chaos", "--report", str(page))
    assert done.returncode == 0, done.stdout + done.stderr
    data = embedded(page.read_text())
    labelled = {"publish", *data["fault_kinds"]}
    worst = sorted(data["sagas"], key=lambda s: (-s["faults"], s["id"]))[:6]
    drawn: list[str] = []
    with Browser(tmp_path / "profile") as browser:
        browser.open(page, "document.body && document.body.getAttribute('data-rendered')")
        for saga in worst:
            seen = browser.evaluate(MEASURE % json.dumps(saga["id"]))
            assert seen["saga"] == saga["id"]
            texts = seen["texts"]
            # Every marker that has a label got one: none was left out to make room.
            marks = [m for m in saga["marks"] if data["kinds"][m[3]] in labelled]
            assert sum("mark-label" in t["cls"] for t in texts) == len(marks)
            left, top, right, bottom = seen["svg"]
            for text in texts:
                x0, y0, x1, y1 = text["box"]
                assert x0 < x1, text
                assert y0 < y1, text
                assert left <= x0, text  # inside the drawing, not cut off by its edge
                assert x1 <= right, text
                assert top <= y0, text
                assert y1 <= bottom, text
            for a, b in itertools.combinations(texts, 2):
                assert not intersect(a["box"], b["box"]), (saga["id"], a, b)
            drawn += [t["text"] for t in texts]
    # The labels the issue saw overlapping were among those measured.
    for word in ("duplicate", "down", "lost", "partitioned"):
        assert any(text.startswith(word) for text in drawn), word
