// Helpers shared by the report pages (run.js, explore.js): element builders, the embedded
// data, and the colour of an outcome or a fault kind (report.css holds the colours).
var ui = (function () {
  "use strict";
  var NS = "http:" + "//www.w3.org/2000/svg";

  function set(e, attrs) {
    for (var k in attrs) {
      if (Object.prototype.hasOwnProperty.call(attrs, k)) { e.setAttribute(k, attrs[k]); }
    }
    return e;
  }
  // An HTML element with attributes and text, appended to `parent` when given.
  function tag(name, attrs, text, parent) {
    var e = set(document.createElement(name), attrs);
    if (text !== undefined && text !== null) { e.textContent = text; }
    if (parent) { parent.appendChild(e); }
    return e;
  }
  // An SVG element with attributes, appended to `parent` when given.
  function svg(name, attrs, parent) {
    var e = set(document.createElementNS(NS, name), attrs);
    if (parent) { parent.appendChild(e); }
    return e;
  }
  // A tooltip.
  function title(node, text) { svg("title", {}, node).textContent = text; }
  function data() { return JSON.parse(document.getElementById("report-data").textContent); }
  function outcomeColour(outcome) { return "var(--o-" + outcome + ", #546e7a)"; }
  function faultColour(kind) { return "var(--f-" + kind + ", #546e7a)"; }
  // A legend entry: a colour swatch (or a drawn icon) and its name.
  function legendEntry(box, colour, text) {
    var s = tag("span", {}, null, box);
    if (colour) { tag("i", {class: "swatch", style: "background:" + colour}, null, s); }
    s.appendChild(document.createTextNode(text));
    return s;
  }

  return {tag: tag, svg: svg, title: title, data: data, outcomeColour: outcomeColour,
    faultColour: faultColour, legendEntry: legendEntry};
})();
