"""Word a finding: small jinja2 Markdown templates (``labkit/teaching/templates/*.md.j2``), shown as Markdown.

A template receives a finding (:mod:`labkit.teaching.findings`) and may only say what its
numbers and flags allow; the mechanism itself (what a backlog is, what nginx does) is
fixed text in the notebooks' Markdown cells, written once. :func:`render` gives the
Markdown source; :func:`markdown` wraps it for display in a notebook (IPython's
``Markdown``), so the output is a Markdown cell output, not printed text.
"""

from __future__ import annotations

import functools
import math


def ms(v) -> str:
    """A latency: "1,012 ms", "8.4 ms"; "—" when missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:,.0f} ms" if abs(v) >= 10 else f"{v:.1f} ms"


def num(v, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:,.{digits}f}"


def where(nodes: int, c: int) -> str:
    """ "c=50" at one node, "2 nodes, c=50" otherwise."""
    return f"c={c}" if nodes == 1 else f"{nodes} nodes, c={c}"


def pct(v: float) -> str:
    """A share as a percentage of its size ("42.0 %"); "—" when missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{abs(v) * 100:.1f} %"


def signed(v: float, unit: str = "") -> str:
    """A difference with its sign, the minus typeset (U+2212): "+0.8 ms", "−3.1 %"; "—" when missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    text = f"{abs(v):,.1f}" + (f" {unit}" if unit else "")
    return ("−" if v < 0 else "+") + text


@functools.lru_cache(maxsize=1)
def _env():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("labkit.teaching", "templates"),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=False, autoescape=False)
    env.filters.update(ms=ms, num=num, pct=pct, signed=signed)
    env.globals.update(where=where)
    return env


def render(template: str, **context) -> str:
    """The Markdown text of ``template`` (a file name under templates/) with ``context``."""
    text = _env().get_template(template).render(**context)
    return "\n".join(line.rstrip() for line in text.strip().splitlines()) + "\n"


class Text(str):
    """Markdown text that a notebook displays as Markdown (``_repr_markdown_``) and tests read as a str."""

    def _repr_markdown_(self) -> str:
        return str(self)

    def _repr_pretty_(self, p, cycle) -> None:  # text/plain beside the Markdown: the text, not a quoted repr
        p.text(str(self))


def number(v: float) -> str:
    """How the notebooks' tables show a float: 1 decimal from 10 up ("1,012.4"), 2 below ("0.98")."""
    return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"


def use_table_format() -> None:
    """Tables in this kernel show floats with :func:`number` (not 112.644000)."""
    import pandas as pd

    pd.set_option("display.float_format", number)


def markdown(template: str, **context) -> Text:
    """:func:`render`, displayed as Markdown when it is a cell's value."""
    return Text(render(template, **context))
