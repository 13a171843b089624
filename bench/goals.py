"""Benchmark figures and their goals, printed as one Markdown table per scenario.

A goal is one of three kinds. Count goals (registry requests, modules imported)
are deterministic and fail the run when missed. Ratio goals (a 10k/2k CPU ratio,
start-up against `python -c pass`) and time goals depend on the machine and its
load: they are reported, and fail the run only under ``--strict`` (ratios).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal["count", "ratio", "time"]


@dataclass(frozen=True)
class Figure:
    """One measured figure, with its goal (an upper bound) when it has one."""

    name: str
    value: float
    unit: str
    kind: Kind
    goal: float | None = None

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.value <= self.goal

    def shown(self, number: float) -> str:
        if self.unit == "s":
            return f"{number:.2f} s"
        if self.unit == "x":
            return f"{number:.2f}×"
        return f"{number:,.0f}" + (f" {self.unit}" if self.unit else "")


def table(title: str, figures: Sequence[Figure]) -> str:
    """`| figure | value | goal | kind | met |` as Markdown."""
    lines = [
        f"### {title}",
        "",
        "| figure | value | goal | kind | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for figure in figures:
        goal = "-" if figure.goal is None else f"≤ {figure.shown(figure.goal)}"
        met = {None: "-", True: "yes", False: "**MISSED**"}[figure.met]
        lines.append(
            f"| {figure.name} | {figure.shown(figure.value)} | {goal} | {figure.kind} | {met} |"
        )
    return "\n".join(lines) + "\n"


def failed(figures: Sequence[Figure], *, strict: bool) -> list[Figure]:
    """The figures whose miss fails the run: counts always, ratios under `strict`."""
    kinds = {"count", "ratio"} if strict else {"count"}
    return [f for f in figures if f.kind in kinds and f.met is False]
