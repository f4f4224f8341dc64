"""The HTML report: one self-contained file per run (or per exploration) that a browser opens
with no network.

A package of its own: `data.py` builds the JSON the page embeds, `page.py` puts it together
with the page's files (page.html, run.html, explore.html, report.css, common.js, run.js,
explore.js), which are real files of their own type, read through importlib.resources. The
page draws the SVG timelines in the browser, so the file stays small for hundreds of sagas.
Nothing here runs or changes a simulation; nothing below the command line imports this.
"""

from __future__ import annotations

from .data import FAULT_KINDS, MARK_KINDS, Exploration, explore_data, run_data
from .page import ASSETS, asset, page, write_explore_report, write_report

__all__ = [
    "ASSETS",
    "FAULT_KINDS",
    "MARK_KINDS",
    "Exploration",
    "asset",
    "explore_data",
    "page",
    "run_data",
    "write_explore_report",
    "write_report",
]
