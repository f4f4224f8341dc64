"""The HTML report: one self-contained file per run (or per exploration) that a browser opens
with no network.

This module owns the report's data (a compact JSON digest of the trace, embedded in the page)
and its look (inline CSS, and inline JavaScript that draws the SVG timelines in the browser, so
the file stays small for hundreds of sagas: the page draws only the saga being looked at in
full). It must never run or change a simulation, and never reference anything outside the file:
no CDN, no font, no image, no fetch.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import write_text
from .oracle import FAILED, number_of
from .scenario import Scenario
from .simulation import SimulationResult
from .trace import US, Record

if TYPE_CHECKING:
    from .explore import ExploreResult

#: Record kinds drawn as markers on a saga's timeline; deliveries are drawn as arrows instead,
#: and sends and acks (the bulk of a trace) are left out: they carry nothing a marker would add.
MARK_KINDS = (
    "start",
    "reply",
    "publish",
    "handle",
    "ignore",
    "redeliver",
    "drop",
    "duplicate",
    "delay",
    "reorder",
    "hold",
    "lost",
    "fail",
)
#: Kinds that are a fault hitting the saga (the overview shows these as ticks).
FAULT_KINDS = frozenset({"drop", "duplicate", "delay", "reorder", "hold", "lost", "fail"})
#: Records that start one transmission of a delivery (by delivery id); the arrow starts at the
#: last of them, or else (a plain send leaves no record) at the publish of the event.
SEND_KINDS = frozenset(
    {"start", "send", "drop", "duplicate", "delay", "reorder", "hold", "redeliver"}
)


class _Table:
    """Interned strings: the page refers to event and kind names by index."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, value: str) -> int:
        found = self._index.get(value)
        if found is None:
            found = self._index[value] = len(self.items)
            self.items.append(value)
        return found


def run_data(
    title: str, result: SimulationResult, scenario: Scenario | None = None
) -> dict[str, Any]:
    """What the page draws, as plain JSON: sagas with their markers and arrows, the crash and
    partition windows, the outcome counts and the invariant results."""
    records: list[Record] = list(result.trace.records)
    # Lanes of a saga's timeline, top to bottom, in the saga's own order.
    lanes = ("client", *result.saga.service_names)
    lane = {name: i for i, name in enumerate(lanes)}
    publisher = result.saga.publisher
    names, kinds = _Table(), _Table()
    windows: list[dict[str, Any]] = []
    open_windows: dict[tuple[str, str], dict[str, Any]] = {}
    per_saga: dict[str, dict[str, Any]] = {}
    last_send: dict[str, tuple[int, int]] = {}
    last_publish: dict[tuple[str, str], tuple[int, int]] = {}
    for record in records:
        if record.kind in ("crash", "partition"):
            window = {
                "kind": record.kind,
                "node": record.node,
                "t0": record.t_us,
                "t1": None,
                "info": record.info,
            }
            windows.append(window)
            open_windows[(record.kind, record.node)] = window
            continue
        if record.kind in ("restart", "heal"):
            opened = open_windows.pop(
                ("crash" if record.kind == "restart" else "partition", record.node), None
            )
            if opened is not None:
                opened["t1"] = record.t_us
            continue
        if not record.saga:
            continue
        saga = per_saga.setdefault(record.saga, {"marks": [], "msgs": []})
        if record.kind in SEND_KINDS and record.ref:
            last_send[record.ref] = (record.seq, record.t_us)
        elif record.kind == "publish":
            last_publish[(record.saga, record.event)] = (record.seq, record.t_us)
        if record.kind == "deliver":
            sent_seq, sent_t = last_send.get(
                record.ref, last_publish.get((record.saga, record.event), (record.seq, record.t_us))
            )
            saga["msgs"].append(
                [
                    sent_seq,
                    sent_t,
                    record.seq,
                    record.t_us,
                    lane.get(publisher.get(record.event, "client"), 0),
                    lane.get(record.node, 0),
                    names(record.event),
                    record.info.removeprefix("attempt "),
                ]
            )
        elif record.kind in MARK_KINDS:
            saga["marks"].append(
                [
                    record.seq,
                    record.t_us,
                    lane.get(record.node, 0),
                    kinds(record.kind),
                    names(record.event),
                    record.info,
                ]
            )
    end = result.virtual_us
    for window in windows:
        if window["t1"] is None:
            window["t1"] = end
    violated: dict[str, list[int | str]] = {}
    for violation in result.violations:
        if violation.saga_id is not None:
            number = number_of(result.saga, violation.invariant)
            violated.setdefault(violation.saga_id, []).append(number)
    sagas = []
    for entry in result.saga_log:
        data = per_saga.get(entry.saga_id, {"marks": [], "msgs": []})
        t0 = records[entry.started_seq].t_us if entry.started_seq < len(records) else 0
        if entry.ended_seq is not None and entry.ended_seq < len(records):
            t1 = records[entry.ended_seq].t_us
        else:
            times = [m[1] for m in data["marks"]] + [m[3] for m in data["msgs"]]
            t1 = max(times, default=t0)
        sagas.append(
            {
                "id": entry.saga_id,
                "status": "stuck" if entry.status == "in_progress" else entry.status,
                "reason": entry.reason or "",
                "t0": t0,
                "t1": t1,
                "events": list(entry.types),
                "violated": sorted(set(violated.get(entry.saga_id, [])), key=str),
                "faults": sum(1 for m in data["marks"] if kinds.items[m[3]] in FAULT_KINDS),
                "marks": data["marks"],
                "msgs": data["msgs"],
            }
        )
    counts = result.counts()
    return {
        "title": title,
        "description": scenario.description if scenario is not None else "",
        "scenario": scenario.name if scenario is not None else "",
        "lanes": list(lanes),
        "names": names.items,
        "kinds": kinds.items,
        "end": max(end, 1),
        "us": US,
        "counts": {("stuck" if k == "in_progress" else k): v for k, v in counts.items()},
        "faults": dict(result.fault_counts),
        "virtual_s": result.virtual_us / US,
        "wall_s": round(result.wall_s, 4),
        "trace_lines": len(result.trace),
        "invariants": [
            {"n": n, "name": name, "ok": state != FAILED, "result": state}
            for n, (name, state) in enumerate(result.verdict.results, start=1)
        ],
        "violations": [
            {"n": number_of(result.saga, v.invariant), "saga": v.saga_id, "detail": v.detail}
            for v in result.violations
        ],
        "windows": windows,
        "sagas": sagas,
    }


def write_report(
    path: str | Path, title: str, result: SimulationResult, scenario: Scenario | None = None
) -> None:
    """Write the report of one run to `path`: one HTML file, nothing else needed to view it."""
    page = _page(title, RUN_BODY, RUN_SCRIPT, run_data(title, result, scenario))
    write_text(path, page)


def explore_data(title: str, result: ExploreResult) -> dict[str, Any]:
    from .explore import OUTCOME_COLUMNS, replay_command_line

    failing = []
    for run in result.failing:
        replay = result.replays.get(run.seed)
        path = result.paths.get(run.seed)
        failing.append(
            {
                "seed": run.seed,
                "violations": [
                    {
                        "n": number_of(result.saga, name),
                        "name": name,
                        "saga": saga,
                        "detail": detail,
                    }
                    for name, saga, detail in run.violations
                ],
                "faults": list(run.faults),
                "recorded": len(run.decisions or ()),
                "decisions": [d.to_json() for d in (replay.decisions if replay else None) or ()],
                "shrunk": bool(replay and replay.shrunk),
                "tests": replay.tests if replay else 0,
                "command": replay_command_line(path) if path else "",
            }
        )
    return {
        "title": title,
        "scenario": result.scenario,
        "swarm": result.swarm,
        "jobs": result.jobs,
        "runs": len(result.runs),
        "sagas": sum(sum(r.counts.values()) for r in result.runs),
        "wall_s": round(result.wall_s, 3),
        "shrink_s": round(result.shrink_s, 3),
        "runs_per_s": round(result.runs_per_s, 2),
        "columns": list(OUTCOME_COLUMNS),
        "matrix": [{"row": row, **cells} for row, cells in result.matrix()],
        "failing": failing,
    }


def write_explore_report(path: str | Path, title: str, result: ExploreResult) -> None:
    """Write the report of an exploration: the fault x outcome matrix and every failing seed
    with its shrunk decisions and the command that replays it."""
    write_text(path, _page(title, EXPLORE_BODY, EXPLORE_SCRIPT, explore_data(title, result)))


def _page(title: str, body: str, script: str, data: dict[str, Any]) -> str:
    # "<" is escaped so that no string in the data can close the script element early.
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    return (
        PAGE.replace("%TITLE%", html.escape(title))
        .replace("%BODY%", body)
        .replace("%DATA%", payload)
        .replace("%SCRIPT%", script)
    )


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%TITLE%</title>
<style>
:root { --completed:#2e7d32; --compensated:#ef6c00; --failed:#757575; --stuck:#c62828;
  --drop:#d32f2f; --duplicate:#f9a825; --delay:#1e88e5; --reorder:#5e35b1; --hold:#8e24aa;
  --crash:#b71c1c; --partition:#7b1fa2; --fail:#c2185b; --ink:#212121; --mute:#757575;
  --line:#e0e0e0; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  margin: 0; padding: 16px 24px 40px; background: #fafafa; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.sub { color: var(--mute); margin: 0 0 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 8px; margin: 8px 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; }
.card b { font-size: 18px; display: block; }
.completed b { color: var(--completed); } .compensated b { color: var(--compensated); }
.failed b { color: var(--failed); } .stuck b { color: var(--stuck); }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; font-weight: 600; } td.num, th.num { text-align: right; }
.ok { color: var(--completed); font-weight: 600; } .bad { color: var(--stuck); font-weight: 700; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12px; }
.panel { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px;
  overflow-x: auto; }
.controls { display: flex; gap: 12px; align-items: center; margin: 6px 0; flex-wrap: wrap; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; color: var(--mute); font-size: 12px;
  margin: 6px 0; }
.legend span { display: inline-flex; align-items: center; gap: 4px; }
.swatch { width: 12px; height: 12px; display: inline-block; border-radius: 2px; }
svg text { font: 11px system-ui, sans-serif; fill: var(--ink); }
svg .axis text { fill: var(--mute); }
svg .gridline { stroke: #eeeeee; }
svg .lane-bg { fill: #fbfbfb; stroke: var(--line); }
svg .row-bg { fill: transparent; }
svg .saga-row:hover .row-bg, svg .saga-row.selected .row-bg { fill: #e3f2fd; }
svg .saga-row { cursor: pointer; }
svg .span { stroke-width: 4; stroke-linecap: round; }
svg .s-completed { stroke: var(--completed); } svg .s-compensated { stroke: var(--compensated); }
svg .s-failed { stroke: var(--failed); } svg .s-stuck { stroke: var(--stuck); }
svg .w-crash { fill: var(--crash); fill-opacity: .18; }
svg .w-partition { fill: var(--partition); fill-opacity: .14; }
svg .msg { stroke: #90a4ae; stroke-width: 1.2; fill: none; }
svg .msg.compensation { stroke: var(--compensated); stroke-dasharray: 4 3; }
svg .f-drop { fill: var(--drop); stroke: var(--drop); } svg .f-duplicate { fill: var(--duplicate); }
svg .f-delay { fill: var(--delay); } svg .f-reorder { fill: var(--reorder); }
svg .f-hold { fill: var(--hold); } svg .f-lost { fill: #424242; stroke: #424242; }
svg .f-fail { fill: var(--fail); } svg .f-crash { fill: var(--crash); }
svg .violated-label { fill: var(--stuck); font-weight: 700; }
svg .fault-label { fill: #b71c1c; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px;
  color: #fff; } .badge.completed { background: var(--completed); }
.badge.compensated { background: var(--compensated); } .badge.failed { background: var(--failed); }
.badge.stuck { background: var(--stuck); }
tr.fault td { color: var(--drop); }
.bar-row .label { width: 180px; }
</style>
</head>
<body>
%BODY%
<script type="application/json" id="report-data">%DATA%</script>
<script>
%SCRIPT%
</script>
</body>
</html>
"""

RUN_BODY = """<h1 id="title"></h1>
<p class="sub" id="subtitle"></p>
<div class="cards" id="cards"></div>
<h2>Invariants</h2>
<div id="invariants"></div>
<h2>Sagas over time</h2>
<div class="legend" id="legend"></div>
<div class="controls">
  <label>show <select id="filter">
    <option value="all">all sagas</option>
    <option value="faults">sagas hit by a fault</option>
    <option value="violated">sagas that broke an invariant</option>
    <option value="completed">completed</option>
    <option value="compensated">compensated</option>
    <option value="failed">failed</option>
    <option value="stuck">stuck</option>
  </select></label>
  <span id="shown" class="sub"></span>
</div>
<div class="panel" id="overview"></div>
<h2 id="detail-title">One saga</h2>
<p class="sub">Click a saga above. Lanes are the client and the three services; one column per
trace record, in order (the axis gives their virtual time); arrows are deliveries (dashed:
compensation), markers are what happened at each service.</p>
<div class="panel" id="detail"></div>
<div id="records"></div>
<noscript><p>This report draws its timelines with JavaScript.</p></noscript>
"""

RUN_SCRIPT = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var NS = "http:" + "//www.w3.org/2000/svg";
  var COMPENSATION = {PaymentFailed: 1, ShipmentFailed: 1, PaymentRefunded: 1,
    InventoryReleased: 1, InventoryReservationFailed: 1};
  var FAULTS = {drop: 1, duplicate: 1, delay: 1, reorder: 1, hold: 1, lost: 1, fail: 1};
  var byId = {};
  D.sagas.forEach(function (s) { byId[s.id] = s; });
  var selected = null;

  function svg(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(e); }
    return e;
  }
  function tag(name, attrs, text, parent) {
    var e = document.createElement(name);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined && text !== null) { e.textContent = text; }
    if (parent) { parent.appendChild(e); }
    return e;
  }
  function title(node, text) { svg("title", {}, node).textContent = text; }
  function secs(us) { return (us / D.us).toFixed(3) + "s"; }
  function niceStep(span, target) {
    var raw = span / target, p = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
  }
  function axis(g, x, t0, t1, y0, y1) {
    var step = niceStep(Math.max(t1 - t0, 1), 8);
    for (var t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      svg("line", {x1: x(t), x2: x(t), y1: y0, y2: y1, class: "gridline"}, g);
      var label = svg("text", {x: x(t), y: y0 - 4, "text-anchor": "middle"}, g);
      label.textContent = (t / D.us).toFixed(step < D.us / 10 ? 3 : 1) + "s";
    }
  }
  // A small glyph per marker kind; returns the element so callers can add a tooltip.
  function glyph(kind, cx, cy, parent, cls) {
    var g = svg("g", {class: (cls || "mark") + " m-" + kind, "data-kind": kind}, parent);
    if (kind === "publish") {
      svg("circle", {cx: cx, cy: cy, r: 4.5, fill: "#37474f"}, g);
    } else if (kind === "handle") {
      svg("circle", {cx: cx, cy: cy, r: 3, fill: "#ffffff", stroke: "#37474f"}, g);
    } else if (kind === "ignore") {
      svg("circle", {cx: cx, cy: cy, r: 3, fill: "#ffffff", stroke: "#bdbdbd"}, g);
    } else if (kind === "drop" || kind === "lost") {
      svg("path", {d: "M" + (cx - 4) + " " + (cy - 4) + "l8 8m0 -8l-8 8",
        class: "f-" + kind, "stroke-width": 2.2}, g);
    } else if (kind === "duplicate") {
      svg("rect", {x: cx - 5, y: cy - 5, width: 6, height: 6, class: "f-duplicate"}, g);
      svg("rect", {x: cx - 1, y: cy - 1, width: 6, height: 6, class: "f-duplicate",
        stroke: "#fff"}, g);
    } else if (kind === "delay" || kind === "reorder") {
      svg("path", {d: "M" + (cx - 5) + " " + (cy - 5) + "h10l-10 10h10z",
        class: "f-" + kind}, g);
    } else if (kind === "hold") {
      svg("rect", {x: cx - 4, y: cy - 4, width: 8, height: 8, class: "f-hold"}, g);
    } else if (kind === "fail") {
      svg("path", {d: "M" + cx + " " + (cy - 6) + "l6 10h-12z", class: "f-fail"}, g);
    } else if (kind === "redeliver") {
      svg("circle", {cx: cx, cy: cy, r: 3.5, fill: "none", stroke: "#1e88e5",
        "stroke-dasharray": "2 1.5"}, g);
    } else {
      svg("path", {d: "M" + cx + " " + (cy - 4) + "l4 4-4 4-4-4z", fill: "#546e7a"}, g);
    }
    return g;
  }

  function header() {
    document.getElementById("title").textContent = D.title;
    document.title = D.title;
    var sub = [];
    if (D.description) { sub.push(D.description); }
    sub.push(D.sagas.length + " sagas, " + D.virtual_s.toFixed(3) + "s virtual, " +
      D.wall_s.toFixed(3) + "s wall, " + D.trace_lines + " trace lines");
    document.getElementById("subtitle").textContent = sub.join(" \u2014 ");
    var cards = document.getElementById("cards");
    ["completed", "compensated", "failed", "stuck"].forEach(function (k) {
      var c = tag("div", {class: "card " + k}, null, cards);
      tag("b", {}, String(D.counts[k] || 0), c);
      tag("span", {}, k, c);
    });
    var faults = Object.keys(D.faults);
    var f = tag("div", {class: "card"}, null, cards);
    tag("b", {}, String(faults.reduce(function (a, k) { return a + D.faults[k]; }, 0)), f);
    tag("span", {}, "faults: " + (faults.map(function (k) {
      return k + " " + D.faults[k]; }).join(", ") || "none"), f);
  }

  function invariants() {
    var box = document.getElementById("invariants");
    var table = tag("table", {id: "invariant-table"}, null, box);
    var head = tag("tr", {}, null, table);
    ["#", "invariant", "result", "violations"].forEach(function (h) { tag("th", {}, h, head); });
    D.invariants.forEach(function (inv) {
      var tr = tag("tr", {class: "invariant", "data-ok": String(inv.ok)}, null, table);
      tag("td", {}, String(inv.n), tr);
      tag("td", {}, inv.name, tr);
      tag("td", {class: inv.ok ? "ok" : "bad"}, inv.result, tr);
      var cell = tag("td", {}, null, tr);
      var found = D.violations.filter(function (v) { return v.n === inv.n; });
      found.slice(0, 20).forEach(function (v) {
        var line = tag("div", {class: "violation"}, null, cell);
        if (v.saga) {
          var a = tag("a", {href: "#detail-title"}, v.saga, line);
          a.addEventListener("click", function () { select(v.saga); });
          line.appendChild(document.createTextNode(": " + v.detail));
        } else {
          line.textContent = v.detail;
        }
      });
      if (found.length > 20) { tag("div", {}, "... and " + (found.length - 20) + " more", cell); }
    });
  }

  function legend() {
    var box = document.getElementById("legend");
    [["completed", "var(--completed)"], ["compensated", "var(--compensated)"],
     ["failed", "var(--failed)"], ["stuck", "var(--stuck)"],
     ["crash (service down)", "var(--crash)"], ["partition", "var(--partition)"]
    ].forEach(function (p) {
      var s = tag("span", {}, null, box);
      tag("i", {class: "swatch", style: "background:" + p[1]}, null, s);
      s.appendChild(document.createTextNode(p[0]));
    });
    ["publish", "handle", "ignore", "drop", "duplicate", "delay", "reorder", "hold", "lost",
     "fail", "redeliver"].forEach(function (k) {
      var s = tag("span", {}, null, box);
      var icon = svg("svg", {width: 14, height: 14}, s);
      glyph(k, 7, 7, icon, "legend-mark");
      s.appendChild(document.createTextNode(k === "fail" ? "forced failure" : k));
    });
  }

  function visible() {
    var f = document.getElementById("filter").value;
    return D.sagas.filter(function (s) {
      if (f === "all") { return true; }
      if (f === "faults") { return s.faults > 0; }
      if (f === "violated") { return s.violated.length > 0; }
      return s.status === f;
    });
  }

  function overview() {
    var box = document.getElementById("overview");
    box.textContent = "";
    var sagas = visible();
    document.getElementById("shown").textContent = sagas.length + " of " + D.sagas.length +
      " sagas shown";
    var W = Math.max(box.clientWidth - 20, 640), L = 78, R = 12, ROW = 12;
    var services = D.lanes.slice(1), TOP = 22 + services.length * 12 + 10;
    var H = TOP + sagas.length * ROW + 6;
    var x = function (t) { return L + (W - L - R) * t / D.end; };
    var root = svg("svg", {width: W, height: H, id: "overview-svg"}, box);
    var grid = svg("g", {class: "axis"}, root);
    axis(grid, x, 0, D.end, 14, H);
    services.forEach(function (name, i) {
      var y = 22 + i * 12;
      svg("rect", {x: L, y: y, width: W - L - R, height: 10, class: "lane-bg"}, root);
      svg("text", {x: L - 6, y: y + 9, "text-anchor": "end"}, root).textContent = name;
      D.windows.filter(function (w) { return w.node === name; }).forEach(function (w) {
        var r = svg("rect", {x: x(w.t0), y: y, width: Math.max(x(w.t1) - x(w.t0), 2), height: 10,
          class: "window w-" + w.kind}, root);
        title(r, w.kind + " " + name + " " + secs(w.t0) + "\u2013" + secs(w.t1) +
          (w.info ? " (" + w.info + ")" : ""));
      });
    });
    sagas.forEach(function (s, i) {
      var y = TOP + i * ROW;
      var g = svg("g", {class: "saga-row", "data-saga": s.id, "data-status": s.status}, root);
      svg("rect", {x: 0, y: y, width: W, height: ROW, class: "row-bg"}, g);
      var label = svg("text", {x: L - 6, y: y + 9, "text-anchor": "end",
        class: s.violated.length ? "violated-label" : ""}, g);
      label.textContent = (s.violated.length ? "\u26a0 " : "") + s.id;
      var line = svg("line", {x1: x(s.t0), x2: Math.max(x(s.t1), x(s.t0) + 2), y1: y + 6,
        y2: y + 6, class: "span s-" + s.status}, g);
      title(line, s.id + ": " + s.status + (s.reason ? " (" + s.reason + ")" : "") + ", " +
        secs(s.t0) + "\u2013" + secs(s.t1) + ", " + s.faults + " faults");
      s.marks.forEach(function (m) {
        var kind = D.kinds[m[3]];
        if (!FAULTS[kind]) { return; }
        svg("rect", {x: x(m[1]) - 1, y: y + 1, width: 2, height: 10, class: "f-" + kind}, g);
      });
      g.addEventListener("click", function () { select(s.id); });
    });
  }

  // The detail view spaces what happened to one saga by its order in the trace (one column
  // per record), not by time: on a fault-free network a whole saga happens at one instant of
  // virtual time, and a time axis would pile every marker onto one line. The axis still
  // labels the time of each column.
  function detail(id) {
    var s = byId[id];
    var box = document.getElementById("detail");
    box.textContent = "";
    document.getElementById("detail-title").textContent = "Saga " + s.id + " \u2014 " +
      s.status + (s.reason ? " (" + s.reason + ")" : "") +
      (s.violated.length ? " \u2014 breaks invariant " + s.violated.join(", ") : "");
    var seen = {}, cols = [];
    function col(seq, t) { if (!(seq in seen)) { seen[seq] = 1; cols.push([seq, t]); } }
    s.marks.forEach(function (m) { col(m[0], m[1]); });
    s.msgs.forEach(function (m) { col(m[0], m[1]); col(m[2], m[3]); });
    cols.sort(function (a, b) { return a[0] - b[0]; });
    var rank = {};
    cols.forEach(function (c, i) { rank[c[0]] = i; });
    var n = Math.max(cols.length, 1);
    var W0 = Math.max(box.clientWidth - 20, 640), L = 86, R = 110, LANE = 72, TOP = 30;
    var STEP = Math.min(Math.max(30, (W0 - L - R) / n), 140);
    var W = L + R + STEP * n, H = TOP + D.lanes.length * LANE + 8;
    var x = function (seq) { return L + STEP * (rank[seq] + 0.5); };
    var xt = function (t) {  // where time t falls among the columns
      for (var i = 0; i < cols.length; i++) { if (cols[i][1] >= t) { return L + STEP * i; } }
      return L + STEP * n;
    };
    var laneY = function (i) { return TOP + i * LANE + LANE / 2; };
    var root = svg("svg", {width: W, height: H, id: "detail-svg", "data-saga": s.id}, box);
    var defs = svg("defs", {}, root);
    var marker = svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse"}, defs);
    svg("path", {d: "M0 0L10 5L0 10z", fill: "#90a4ae"}, marker);
    var tFirst = cols.length ? cols[0][1] : s.t0;
    var tLast = cols.length ? cols[cols.length - 1][1] : s.t1;
    D.lanes.forEach(function (name, i) {
      var y = TOP + i * LANE;
      svg("rect", {x: L, y: y + 4, width: W - L - R, height: LANE - 8,
        class: "lane-bg detail-lane", "data-lane": name}, root);
      svg("text", {x: L - 8, y: y + LANE / 2 + 4, "text-anchor": "end"}, root).textContent =
        name;
      D.windows.filter(function (w) {
        return w.node === name && w.t1 > tFirst && w.t0 <= tLast;
      }).forEach(function (w) {
        var a = Math.max(xt(w.t0), L), b = Math.min(xt(w.t1), W - R);
        var r = svg("rect", {x: a, y: y + 4, width: Math.max(b - a, 3), height: LANE - 8,
          class: "window w-" + w.kind}, root);
        title(r, w.kind + " " + name + " " + secs(w.t0) + "\u2013" + secs(w.t1) +
          (w.info ? " (" + w.info + ")" : ""));
        var t = svg("text", {x: a + 3, y: y + 16, fill: "#6a1b9a"}, root);
        t.textContent = w.kind === "crash" ? "down" : "partitioned";
      });
    });
    var axisG = svg("g", {class: "axis"}, root), lastLabel = -1e9;
    cols.forEach(function (c, i) {
      if (i > 0 && cols[i - 1][1] === c[1]) { return; }
      var cx = L + STEP * i;
      svg("line", {x1: cx, x2: cx, y1: TOP, y2: H - 4, class: "gridline"}, axisG);
      if (cx - lastLabel < 64) { return; }
      lastLabel = cx;
      svg("text", {x: cx + 2, y: TOP - 8}, axisG).textContent = secs(c[1]);
    });
    s.msgs.forEach(function (m) {
      var name = D.names[m[6]];
      var line = svg("line", {x1: x(m[0]), y1: laneY(m[4]), x2: x(m[2]), y2: laneY(m[5]),
        class: "msg" + (COMPENSATION[name] ? " compensation" : ""),
        "marker-end": "url(#arrow)"}, root);
      title(line, name + " to " + D.lanes[m[5]] + ", attempt " + m[7] + ": sent " +
        secs(m[1]) + ", delivered " + secs(m[3]));
    });
    var labels = {};
    s.marks.forEach(function (m) {
      var kind = D.kinds[m[3]], name = D.names[m[4]];
      var cx = x(m[0]), cy = laneY(m[2]);
      var g = glyph(kind, cx, cy, root);
      title(g, secs(m[1]) + " " + D.lanes[m[2]] + ": " + kind + (name ? " " + name : "") +
        (m[5] ? " (" + m[5] + ")" : ""));
      var text = null;
      if (kind === "publish") { text = name; }
      else if (kind === "fail") { text = "forced failure: " + m[5]; }
      else if (FAULTS[kind]) {
        text = kind + (kind === "duplicate" || kind === "delay" || kind === "reorder" ?
          " " + m[5].replace(/(\.\d{3})\d+/, "$1") : "");
      }
      if (text) {
        // Up to three label rows per lane, so neighbours do not write over each other.
        var used = labels[m[2]] || (labels[m[2]] = []);
        var width = text.length * 6.2 + 8, level = 0;
        while (level < 3 && used.some(function (u) {
          return u[1] === level && cx < u[0] + u[2] && u[0] < cx + width;
        })) { level += 1; }
        used.push([cx, level % 3, width]);
        var dy = [-9, -21, 22][level % 3];
        var label = svg("text", {x: cx + 4, y: cy + dy, class: "mark-label" +
          (FAULTS[kind] ? " fault-label" : "")}, root);
        label.textContent = text;
      }
    });
    records(s);
    Array.prototype.forEach.call(document.querySelectorAll(".saga-row"), function (row) {
      row.classList.toggle("selected", row.getAttribute("data-saga") === s.id);
    });
  }

  function records(s) {
    var box = document.getElementById("records");
    box.textContent = "";
    var rows = [];
    s.marks.forEach(function (m) {
      rows.push([m[0], m[1], D.lanes[m[2]], D.kinds[m[3]], D.names[m[4]], m[5]]);
    });
    s.msgs.forEach(function (m) {
      rows.push([m[2], m[3], D.lanes[m[5]], "deliver", D.names[m[6]], "attempt " + m[7] +
        ", sent " + secs(m[1]) + " by " + D.lanes[m[4]]]);
    });
    rows.sort(function (a, b) { return a[0] - b[0]; });
    var details = tag("details", {}, null, box);
    tag("summary", {}, "Everything that happened to " + s.id + " (" + rows.length +
      " records)", details);
    var table = tag("table", {class: "records mono"}, null, details);
    var head = tag("tr", {}, null, table);
    ["seq", "time", "where", "what", "message", "info"].forEach(function (h) {
      tag("th", {}, h, head);
    });
    rows.forEach(function (r) {
      var tr = tag("tr", {class: "record" + (FAULTS[r[3]] ? " fault" : "")}, null, table);
      tag("td", {class: "num"}, String(r[0]), tr);
      tag("td", {class: "num"}, secs(r[1]), tr);
      tag("td", {}, r[2], tr);
      tag("td", {}, r[3], tr);
      tag("td", {}, r[4], tr);
      tag("td", {}, r[5], tr);
    });
  }

  function select(id) {
    if (!byId[id]) { return; }
    selected = id;
    detail(id);
  }

  header();
  invariants();
  legend();
  overview();
  document.getElementById("filter").addEventListener("change", function () {
    overview();
    if (selected) { select(selected); }
  });
  var first = D.sagas.filter(function (s) { return s.violated.length; })[0] ||
    D.sagas.filter(function (s) { return s.faults; })[0] || D.sagas[0];
  if (first) { select(first.id); }
  document.body.setAttribute("data-rendered", String(D.sagas.length));
})();
"""

EXPLORE_BODY = """<h1 id="title"></h1>
<p class="sub" id="subtitle"></p>
<div class="cards" id="cards"></div>
<h2>Fault kinds &times; outcomes</h2>
<p class="sub">A run counts in the row of every fault kind it injected at least once.
Outcome columns count sagas; <em>runs</em> and <em>violated</em> count runs.</p>
<div id="matrix"></div>
<h2>Outcome mix per fault kind</h2>
<div class="legend"><span><i class="swatch" style="background:var(--completed)"></i>completed</span>
<span><i class="swatch" style="background:var(--compensated)"></i>compensated</span>
<span><i class="swatch" style="background:var(--failed)"></i>failed</span>
<span><i class="swatch" style="background:var(--stuck)"></i>stuck</span></div>
<div class="panel" id="bars"></div>
<h2>Failing seeds</h2>
<div id="failing"></div>
<noscript><p>This report draws its tables with JavaScript.</p></noscript>
"""

EXPLORE_SCRIPT = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var NS = "http:" + "//www.w3.org/2000/svg";
  var COLORS = {completed: "var(--completed)", compensated: "var(--compensated)",
    failed: "var(--failed)", stuck: "var(--stuck)"};
  function tag(name, attrs, text, parent) {
    var e = document.createElement(name);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined && text !== null) { e.textContent = text; }
    if (parent) { parent.appendChild(e); }
    return e;
  }
  function svg(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(e); }
    return e;
  }
  document.getElementById("title").textContent = D.title;
  document.title = D.title;
  document.getElementById("subtitle").textContent = D.runs + " runs of " + D.scenario + " (" +
    D.sagas + " sagas) with " + (D.swarm ? "swarm fault mixes" : "the scenario's faults") +
    ", " + D.jobs + " job" + (D.jobs === 1 ? "" : "s");
  var cards = document.getElementById("cards");
  [[String(D.runs), "runs"], [D.runs_per_s.toFixed(1), "runs/s"],
   [D.wall_s.toFixed(2) + "s", "wall"], [String(D.failing.length), "violating runs"]
  ].forEach(function (c) {
    var card = tag("div", {class: "card" + (c[1] === "violating runs" && D.failing.length ?
      " stuck" : "")}, null, cards);
    tag("b", {}, c[0], card);
    tag("span", {}, c[1], card);
  });

  var table = tag("table", {id: "matrix-table"}, null, document.getElementById("matrix"));
  var head = tag("tr", {}, null, table);
  tag("th", {}, "fault kind", head);
  tag("th", {class: "num"}, "runs", head);
  D.columns.forEach(function (c) { tag("th", {class: "num"}, c, head); });
  D.matrix.forEach(function (row) {
    var tr = tag("tr", {class: "matrix-row", "data-row": row.row}, null, table);
    tag("td", {}, row.row, tr);
    tag("td", {class: "num"}, String(row.runs), tr);
    D.columns.forEach(function (c) {
      tag("td", {class: "num" + (c === "violated" && row[c] ? " bad" : "")}, String(row[c]), tr);
    });
  });

  var box = document.getElementById("bars");
  var W = Math.max(box.clientWidth - 20, 600), L = 170, ROW = 20;
  var root = svg("svg", {width: W, height: D.matrix.length * ROW + 8}, box);
  var outcomes = ["completed", "compensated", "failed", "stuck"];
  D.matrix.forEach(function (row, i) {
    var g = svg("g", {class: "bar-row", "data-row": row.row}, root);
    var y = 4 + i * ROW;
    svg("text", {x: L - 8, y: y + 13, "text-anchor": "end"}, g).textContent = row.row;
    var total = outcomes.reduce(function (a, k) { return a + row[k]; }, 0) || 1;
    var x = L;
    outcomes.forEach(function (k) {
      var w = (W - L - 10) * row[k] / total;
      if (w <= 0) { return; }
      var r = svg("rect", {x: x, y: y + 2, width: w, height: ROW - 6, fill: COLORS[k]}, g);
      svg("title", {}, r).textContent = row.row + ": " + row[k] + " " + k + " sagas (" +
        (100 * row[k] / total).toFixed(1) + "%)";
      x += w;
    });
  });

  var fail = document.getElementById("failing");
  if (!D.failing.length) {
    tag("p", {class: "ok", id: "no-failures"}, "No run violated an invariant.", fail);
  } else {
    var ft = tag("table", {id: "failing-table"}, null, fail);
    var fh = tag("tr", {}, null, ft);
    ["seed", "violation", "minimal decisions", "replay"].forEach(function (h) {
      tag("th", {}, h, fh);
    });
    D.failing.forEach(function (f) {
      var tr = tag("tr", {class: "failing-seed", "data-seed": String(f.seed)}, null, ft);
      tag("td", {class: "num"}, String(f.seed), tr);
      var v = tag("td", {}, null, tr);
      f.violations.slice(0, 5).forEach(function (x) {
        tag("div", {}, "invariant " + x.n + " (" + x.name + ")" +
          (x.saga ? " " + x.saga : "") + ": " + x.detail, v);
      });
      if (f.faults.length) { tag("div", {class: "sub mono"}, "faults: " + f.faults.join("  "), v); }
      var d = tag("td", {class: "mono"}, null, tr);
      tag("div", {class: "sub"}, f.shrunk ? "shrunk " + f.recorded + " \u2192 " +
        f.decisions.length + " in " + f.tests + " replays" : "not shrunk (" + f.recorded +
        " decisions)", d);
      if (f.shrunk) {
        f.decisions.forEach(function (x) {
          tag("div", {}, x.kind + " " + x.key.join("/") + (x.value ? " = " + x.value : ""), d);
        });
      }
      tag("td", {}, null, tr).appendChild(tag("code", {}, f.command || "(no file saved)"));
    });
  }
  document.body.setAttribute("data-rendered", String(D.matrix.length));
})();
"""
