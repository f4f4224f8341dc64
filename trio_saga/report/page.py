"""The report page: the HTML, CSS and JavaScript files beside this module, read through
importlib.resources and put together with the data into one self-contained HTML file.

This module owns how a page is assembled and written. It must never compute what the page
shows (that is `data.py`), and the page must never reference anything outside the file: no
CDN, no font, no image, no fetch.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..files import write_text
from ..scenario import Scenario
from ..simulation import SimulationResult
from .data import Exploration, explore_data, run_data

#: The page's parts as files of their own type. Each page is the shell (page.html) around a
#: body, the shared styles, and one script: the shared helpers (common.js), then its own.
SHELL = "page.html"
STYLE = "report.css"
COMMON = "common.js"
PAGES = {"run": ("run.html", "run.js"), "explore": ("explore.html", "explore.js")}
ASSETS = (SHELL, STYLE, COMMON, *(name for page in PAGES.values() for name in page))

_SLOT = re.compile(r"%(TITLE|STYLE|BODY|DATA|SCRIPT)%")


@cache
def asset(name: str) -> str:
    """The text of one of the page's files, as installed with the package."""
    if name not in ASSETS:
        raise ValueError(f"no report asset {name!r}")
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    # Inline code and styles must not end their element early.
    if re.search(r"</(script|style)", text, re.IGNORECASE) and name != SHELL:
        raise ValueError(f"report asset {name} closes its own element")
    return text


def page(kind: str, title: str, data: Mapping[str, Any]) -> str:
    """One self-contained HTML page of `kind` ("run" or "explore") embedding `data`."""
    body, script = PAGES[kind]
    # "<" is escaped so that no string in the data can close the script element early.
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    parts = {
        "TITLE": html.escape(title),
        "STYLE": asset(STYLE),
        "BODY": asset(body),
        "DATA": payload,
        "SCRIPT": asset(COMMON) + "\n" + asset(script),
    }
    # One pass, so that text from a run which happens to spell a slot is left alone.
    return _SLOT.sub(lambda m: parts[m.group(1)], asset(SHELL))


def write_report(
    path: str | Path,
    title: str,
    result: SimulationResult,
    scenario: Scenario | None = None,
    *,
    lanes: Sequence[str] | None = None,
    publisher: Mapping[str, str] | None = None,
    compensating: Collection[str] | None = None,
) -> None:
    """Write the report of one run to `path`: one HTML file, nothing else needed to view it.
    `lanes`, `publisher` and `compensating` are as for `run_data`."""
    data = run_data(
        title, result, scenario, lanes=lanes, publisher=publisher, compensating=compensating
    )
    write_text(path, page("run", title, data))


def write_explore_report(
    path: str | Path,
    title: str,
    result: Exploration,
    *,
    replay_command: Callable[[Path], str] | None = None,
) -> None:
    """Write the report of an exploration: the fault x outcome matrix and every failing seed
    with its shrunk decisions and (given `replay_command`) the command that replays it."""
    data = explore_data(title, result, replay_command=replay_command)
    write_text(path, page("explore", title, data))
