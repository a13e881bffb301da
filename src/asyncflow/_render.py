"""Small pieces for showing runs to people: durations, times, HTML with colours.

Shared by :mod:`asyncflow.result` (``_repr_html_``) and :mod:`asyncflow.progress`.
The HTML is self-contained: inline styles, no scripts, no links.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime
from typing import Final

__all__ = ["COLOURS", "badge", "bar", "duration_text", "esc", "table", "time_text"]

COLOURS: Final = {
    "done": "#2e7d32",
    "already_complete": "#607d8b",
    "failed": "#c62828",
    "missing": "#6a1b9a",
    "upstream_failed": "#ef6c00",
    "cancelled": "#757575",
    "running": "#1565c0",
    "waiting": "#9e9e9e",
    "skipped": "#ef6c00",
}
"""A colour per status (``Status`` values) and per progress column."""

esc = html.escape


def duration_text(seconds: float | None) -> str:
    """``"340 ms"``, ``"12.3 s"``, ``"4 min 05 s"``, ``"2 h 03 min"``; ``"-"`` for None."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def time_text(epoch: float | None) -> str:
    """Seconds since the epoch as a local date and time; ``"-"`` for None."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def badge(label: str, count: int | None, colour_key: str) -> str:
    """A coloured pill: ``label count``."""
    colour = COLOURS.get(colour_key, "#616161")
    text = esc(label) if count is None else f"{esc(label)} {count}"
    return (
        f'<span style="display:inline-block;margin:0 .3em .2em 0;padding:0 .5em;'
        f'border-radius:.8em;background:{colour};color:#fff">{text}</span>'
    )


def bar(total: int, segments: Iterable[tuple[str, int]], width: str = "24em") -> str:
    """A horizontal bar of coloured segments (colour key, count) out of ``total``."""
    parts = []
    for key, count in segments:
        if count > 0 and total > 0:
            share = min(100.0, 100.0 * count / total)
            parts.append(
                f'<div style="width:{share:.2f}%;background:{COLOURS[key]};height:100%"></div>'
            )
    return (
        f'<div style="display:flex;width:{width};max-width:100%;height:.7em;'
        f'background:#e0e0e0;border-radius:.35em;overflow:hidden">{"".join(parts)}</div>'
    )


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """An HTML table (no header row if ``header`` is empty); cells are HTML
    already (escape text with :func:`esc`)."""
    head = "".join(f'<th style="text-align:left;padding:0 .8em 0 0">{h}</th>' for h in header)
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    body = "".join(
        "<tr>"
        + "".join(f'<td style="text-align:left;padding:0 .8em 0 0">{cell}</td>' for cell in row)
        + "</tr>"
        for row in rows
    )
    return f"<table>{thead}<tbody>{body}</tbody></table>"
