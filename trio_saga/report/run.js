// The report of one run: header cards, invariants, the overview of every saga over time, and
// one saga in full. Everything it draws comes from the embedded data: its lanes, outcomes,
// fault kinds and compensating events; it knows no saga's names.
(function (ui) {
  "use strict";
  var D = ui.data();
  var tag = ui.tag, svg = ui.svg, title = ui.title;
  var FAULTS = {}, COMPENSATION = {};
  D.fault_kinds.forEach(function (k) { FAULTS[k] = 1; });
  D.compensating.forEach(function (k) { COMPENSATION[k] = 1; });
  var byId = {};
  D.sagas.forEach(function (s) { byId[s.id] = s; });
  var selected = null;

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
  // Room for the longest of `names` left of a plot.
  function margin(names, least) {
    var longest = names.reduce(function (a, n) { return Math.max(a, String(n).length); }, 0);
    return Math.max(least, longest * 6.5 + 14);
  }
  // A small glyph per marker kind; returns the element so callers can add a tooltip.
  function glyph(kind, cx, cy, parent, cls) {
    var g = svg("g", {class: (cls || "mark") + " m-" + kind, "data-kind": kind}, parent);
    var paint = "fill:" + ui.faultColour(kind);
    if (kind === "publish") {
      svg("circle", {cx: cx, cy: cy, r: 4.5, fill: "#37474f"}, g);
    } else if (kind === "handle") {
      svg("circle", {cx: cx, cy: cy, r: 3, fill: "#ffffff", stroke: "#37474f"}, g);
    } else if (kind === "ignore") {
      svg("circle", {cx: cx, cy: cy, r: 3, fill: "#ffffff", stroke: "#bdbdbd"}, g);
    } else if (kind === "drop" || kind === "lost") {
      svg("path", {d: "M" + (cx - 4) + " " + (cy - 4) + "l8 8m0 -8l-8 8",
        class: "f-" + kind, style: "stroke:" + ui.faultColour(kind)}, g);
    } else if (kind === "duplicate") {
      svg("rect", {x: cx - 5, y: cy - 5, width: 6, height: 6, style: paint}, g);
      svg("rect", {x: cx - 1, y: cy - 1, width: 6, height: 6, style: paint, stroke: "#fff"}, g);
    } else if (kind === "delay" || kind === "reorder") {
      svg("path", {d: "M" + (cx - 5) + " " + (cy - 5) + "h10l-10 10h10z", style: paint}, g);
    } else if (kind === "hold") {
      svg("rect", {x: cx - 4, y: cy - 4, width: 8, height: 8, style: paint}, g);
    } else if (kind === "fail") {
      svg("path", {d: "M" + cx + " " + (cy - 6) + "l6 10h-12z", style: paint}, g);
    } else if (kind === "redeliver") {
      svg("circle", {cx: cx, cy: cy, r: 3.5, fill: "none", stroke: "#1e88e5",
        "stroke-dasharray": "2 1.5"}, g);
    } else if (FAULTS[kind]) {
      svg("circle", {cx: cx, cy: cy, r: 4, style: paint}, g);
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
    D.outcomes.forEach(function (k) {
      var c = tag("div", {class: "card outcome", "data-outcome": k,
        style: "border-top-color:" + ui.outcomeColour(k)}, null, cards);
      tag("b", {style: "color:" + ui.outcomeColour(k)}, String(D.counts[k] || 0), c);
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
      tag("td", {class: inv.result === "n/a" ? "na" : inv.ok ? "ok" : "bad"}, inv.result, tr);
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
    D.outcomes.forEach(function (k) { ui.legendEntry(box, ui.outcomeColour(k), k); });
    ui.legendEntry(box, ui.faultColour("crash"), "crash (service down)");
    ui.legendEntry(box, ui.faultColour("partition"), "partition");
    ["publish", "handle", "ignore"].concat(D.fault_kinds, ["redeliver"]).forEach(function (k) {
      var s = ui.legendEntry(box, null, k === "fail" ? "forced failure" : k);
      var icon = svg("svg", {width: 14, height: 14}, null);
      s.insertBefore(icon, s.firstChild);
      glyph(k, 7, 7, icon, "legend-mark");
    });
  }

  function filters() {
    var select = document.getElementById("filter");
    D.outcomes.forEach(function (k) { tag("option", {value: "outcome:" + k}, k, select); });
  }

  function visible() {
    var f = document.getElementById("filter").value;
    return D.sagas.filter(function (s) {
      if (f === "all") { return true; }
      if (f === "faults") { return s.faults > 0; }
      if (f === "violated") { return s.violated.length > 0; }
      return "outcome:" + s.status === f;
    });
  }

  function overview() {
    var box = document.getElementById("overview");
    box.textContent = "";
    var sagas = visible();
    document.getElementById("shown").textContent = sagas.length + " of " + D.sagas.length +
      " sagas shown";
    // The top lane is where sagas start; the window strips are for the services below it.
    var services = D.lanes.slice(1);
    var L = margin(services.concat(D.sagas.map(function (s) { return "\u26a0 " + s.id; })), 78);
    var W = Math.max(box.clientWidth - 20, 640), R = 12, ROW = 12;
    var TOP = 22 + services.length * 12 + 10;
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
        y2: y + 6, class: "span s-" + s.status, style: "stroke:" + ui.outcomeColour(s.status)},
        g);
      title(line, s.id + ": " + s.status + (s.reason ? " (" + s.reason + ")" : "") + ", " +
        secs(s.t0) + "\u2013" + secs(s.t1) + ", " + s.faults + " faults");
      s.marks.forEach(function (m) {
        var kind = D.kinds[m[3]];
        if (!FAULTS[kind]) { return; }
        svg("rect", {x: x(m[1]) - 1, y: y + 1, width: 2, height: 10, class: "tick f-" + kind,
          style: "fill:" + ui.faultColour(kind)}, g);
      });
      g.addEventListener("click", function () { select(s.id); });
    });
  }

  // What a marker says next to it: the event a service published, or the fault that hit.
  function markText(kind, name, info) {
    if (kind === "publish") { return name; }
    if (kind === "fail") { return "forced failure: " + info; }
    if (!FAULTS[kind]) { return null; }
    if (kind === "duplicate" || kind === "delay" || kind === "reorder") {
      return kind + " " + info.replace(/(\.\d{3})\d+/, "$1");
    }
    return kind;
  }

  // Labels of one lane, each anchored at its x, packed into rows so that no two overlap:
  // taken left to right, each goes into the first row whose last label ends before it starts
  // (the fewest rows intervals need). Rows alternate above and below the lane's markers,
  // nearest first. Returns the number of rows.
  function packRows(labels, gap) {
    var ends = [];
    labels.slice().sort(function (a, b) { return a.x - b.x || a.order - b.order; })
      .forEach(function (label) {
        var row = 0;
        while (row < ends.length && ends[row] + gap > label.x) { row += 1; }
        ends[row] = label.x + label.width;
        label.row = row;
      });
    return ends.length;
  }

  // The detail view spaces what happened to one saga by its order in the trace (one column
  // per record), not by time: on a fault-free network a whole saga happens at one instant of
  // virtual time, and a time axis would pile every marker onto one line. The axis still
  // labels the time of each column. Labels are laid out first (measured in the browser, then
  // packed into rows), and each lane is as tall as its rows need.
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
    var W0 = Math.max(box.clientWidth - 20, 640), L = margin(D.lanes, 86), R = 24, TOP = 30;
    var STEP = Math.min(Math.max(30, (W0 - L - R) / n), 140);
    var PLOT = STEP * n;  // width of the columns
    var x = function (seq) { return L + STEP * (rank[seq] + 0.5); };
    var xt = function (t) {  // where time t falls among the columns
      for (var i = 0; i < cols.length; i++) { if (cols[i][1] >= t) { return L + STEP * i; } }
      return L + PLOT;
    };
    var tFirst = cols.length ? cols[0][1] : s.t0;
    var tLast = cols.length ? cols[cols.length - 1][1] : s.t1;

    var root = svg("svg", {width: L + PLOT + R, height: 100, id: "detail-svg",
      "data-saga": s.id}, box);
    var defs = svg("defs", {}, root);
    var marker = svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse"}, defs);
    svg("path", {d: "M0 0L10 5L0 10z", fill: "#90a4ae"}, marker);
    // Layers, bottom to top, so that they can be filled in any order.
    var gLanes = svg("g", {}, root), gWindows = svg("g", {}, root);
    var gAxis = svg("g", {class: "axis"}, root), gMsgs = svg("g", {}, root);
    var gMarks = svg("g", {}, root), gLabels = svg("g", {class: "labels"}, root);

    // 1. Every label, created where it starts and measured.
    var labels = D.lanes.map(function () { return []; }), order = 0;
    function addLabel(laneIndex, lx, text, cls) {
      var e = svg("text", {x: lx, y: 0, class: "detail-label " + cls}, gLabels);
      e.textContent = text;
      labels[laneIndex].push({x: lx, width: e.getComputedTextLength(), el: e, order: order++});
    }
    var windows = [];
    D.lanes.forEach(function (name, i) {
      D.windows.filter(function (w) {
        return w.node === name && w.t1 > tFirst && w.t0 <= tLast;
      }).forEach(function (w) {
        var a = Math.max(xt(w.t0), L), b = Math.min(xt(w.t1), L + PLOT);
        windows.push({lane: i, a: a, b: Math.max(b, a + 3), w: w});
        addLabel(i, a + 3, w.kind === "crash" ? "down" : "partitioned", "window-label");
      });
    });
    s.marks.forEach(function (m) {
      var kind = D.kinds[m[3]], text = markText(kind, D.names[m[4]], m[5]);
      if (text) {
        addLabel(m[2], x(m[0]) + 4, text, "mark-label" + (FAULTS[kind] ? " fault-label" : ""));
      }
    });
    var probe = svg("text", {x: 0, y: 0}, gLabels);
    probe.textContent = "Xg";
    var box0 = probe.getBBox();
    gLabels.removeChild(probe);
    var TEXT_H = Math.ceil(box0.height), ASCENT = -box0.y, GAP = 2, ROWH = TEXT_H + GAP;
    var MARK = 9;  // half the height kept clear for the markers

    // 2. Rows per lane, and the lanes' heights from them.
    var right = L + PLOT;
    var lanes = labels.map(function (own) {
      var rows = packRows(own, 6);
      own.forEach(function (l) { right = Math.max(right, l.x + l.width); });
      return {above: Math.ceil(rows / 2), below: Math.floor(rows / 2)};
    });
    var PAD = 6, y = TOP;
    lanes.forEach(function (lane) {
      var natural = 2 * PAD + (lane.above + lane.below) * ROWH + 2 * MARK;
      lane.top = y;
      lane.height = Math.max(56, natural);
      lane.cy = y + (lane.height - natural) / 2 + PAD + lane.above * ROWH + MARK;
      y += lane.height;
    });
    var H = y + 8, W = Math.ceil(right) + R;
    root.setAttribute("width", W);
    root.setAttribute("height", H);

    // 3. Labels to their rows: even rows above the markers, odd rows below, nearest first.
    labels.forEach(function (own, i) {
      var cy = lanes[i].cy;
      own.forEach(function (l) {
        var level = Math.floor(l.row / 2);
        var top = l.row % 2 === 0 ? cy - MARK - GAP - TEXT_H - level * ROWH :
          cy + MARK + GAP + level * ROWH;
        l.el.setAttribute("y", top + ASCENT);
      });
    });

    // 4. Lanes, windows, the axis, arrows and markers.
    D.lanes.forEach(function (name, i) {
      var lane = lanes[i];
      svg("rect", {x: L, y: lane.top + 2, width: W - L - R, height: lane.height - 4,
        class: "lane-bg detail-lane", "data-lane": name}, gLanes);
      svg("text", {x: L - 8, y: lane.cy + 4, "text-anchor": "end", class: "lane-name"},
        gLanes).textContent = name;
    });
    windows.forEach(function (v) {
      var lane = lanes[v.lane], w = v.w;
      var r = svg("rect", {x: v.a, y: lane.top + 2, width: v.b - v.a, height: lane.height - 4,
        class: "window w-" + w.kind}, gWindows);
      title(r, w.kind + " " + w.node + " " + secs(w.t0) + "\u2013" + secs(w.t1) +
        (w.info ? " (" + w.info + ")" : ""));
    });
    var lastLabel = -1e9;
    cols.forEach(function (c, i) {
      if (i > 0 && cols[i - 1][1] === c[1]) { return; }
      var cx = L + STEP * i;
      svg("line", {x1: cx, x2: cx, y1: TOP, y2: H - 4, class: "gridline"}, gAxis);
      if (cx - lastLabel < 64) { return; }
      lastLabel = cx;
      svg("text", {x: cx + 2, y: TOP - 8}, gAxis).textContent = secs(c[1]);
    });
    s.msgs.forEach(function (m) {
      var name = D.names[m[6]];
      var line = svg("line", {x1: x(m[0]), y1: lanes[m[4]].cy, x2: x(m[2]), y2: lanes[m[5]].cy,
        class: "msg" + (COMPENSATION[name] ? " compensation" : ""),
        "marker-end": "url(#arrow)"}, gMsgs);
      title(line, name + " to " + D.lanes[m[5]] + ", attempt " + m[7] + ": sent " +
        secs(m[1]) + ", delivered " + secs(m[3]));
    });
    s.marks.forEach(function (m) {
      var kind = D.kinds[m[3]], name = D.names[m[4]];
      var g = glyph(kind, x(m[0]), lanes[m[2]].cy, gMarks);
      title(g, secs(m[1]) + " " + D.lanes[m[2]] + ": " + kind + (name ? " " + name : "") +
        (m[5] ? " (" + m[5] + ")" : ""));
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
  filters();
  overview();
  document.getElementById("filter").addEventListener("change", function () {
    overview();
    if (selected) { select(selected); }
  });
  var first = D.sagas.filter(function (s) { return s.violated.length; })[0] ||
    D.sagas.filter(function (s) { return s.faults; })[0] || D.sagas[0];
  if (first) { select(first.id); }
  document.body.setAttribute("data-rendered", String(D.sagas.length));
})(ui);
