// The report of an exploration: the fault kind x outcome matrix, each row's outcome mix as a
// bar, and every failing seed with its shrunk decisions and how to replay it. The columns and
// outcomes come from the embedded data.
(function (ui) {
  "use strict";
  var D = ui.data();
  var tag = ui.tag, svg = ui.svg;
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
      " bad" : "")}, null, cards);
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
      var isOutcome = D.outcomes.indexOf(c) >= 0;
      tag("td", {class: "num" + (!isOutcome && row[c] ? " bad" : "")}, String(row[c]), tr);
    });
  });

  var legend = document.getElementById("legend");
  D.outcomes.forEach(function (k) { ui.legendEntry(legend, ui.outcomeColour(k), k); });
  var box = document.getElementById("bars");
  var W = Math.max(box.clientWidth - 20, 600), L = 170, ROW = 20;
  var root = svg("svg", {width: W, height: D.matrix.length * ROW + 8}, box);
  D.matrix.forEach(function (row, i) {
    var g = svg("g", {class: "bar-row", "data-row": row.row}, root);
    var y = 4 + i * ROW;
    svg("text", {x: L - 8, y: y + 13, "text-anchor": "end"}, g).textContent = row.row;
    var total = D.outcomes.reduce(function (a, k) { return a + row[k]; }, 0) || 1;
    var x = L;
    D.outcomes.forEach(function (k) {
      var w = (W - L - 10) * row[k] / total;
      if (w <= 0) { return; }
      var r = svg("rect", {x: x, y: y + 2, width: w, height: ROW - 6,
        style: "fill:" + ui.outcomeColour(k)}, g);
      ui.title(r, row.row + ": " + row[k] + " " + k + " sagas (" +
        (100 * row[k] / total).toFixed(1) + "%)");
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
      var replay = tag("td", {}, null, tr);
      replay.appendChild(tag("code", {}, f.command || f.file || "(no file saved)"));
    });
  }
  document.body.setAttribute("data-rendered", String(D.matrix.length));
})(ui);
