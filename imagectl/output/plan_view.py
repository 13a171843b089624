"""Render a plan: a readable table, the GitHub matrix, and Markdown for job summaries."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table

from imagectl.output.plaintable import FastTable
from imagectl.plan.model import Action, Plan


def summary_line(plan: Plan) -> str:
    """`Plan: 3 to rebuild, 2 unchanged.` plus what --only left out."""
    text = f"Plan: {len(plan.actions)} to rebuild, {len(plan.unchanged)} unchanged."
    if plan.left_out:
        text += f" Left out by --only (stale, not in this plan): {', '.join(plan.left_out)}."
    return text


def plan_table(plan: Plan) -> FastTable:
    """One row per action, in build order, a rule between dependency levels (printed
    without rich's per-cell rendering off a terminal: plaintable.py)."""
    table = Table(header_style="bold")
    for column in ("image", "reasons", "method", "version", "tags"):
        table.add_column(column, overflow="fold")
    groups = action_levels(plan)
    for index, group in enumerate(groups):
        for position, action in enumerate(group):
            tags = ", ".join(action.tags)
            if action.held_tags:
                tags += f" (kept by a newer version: {', '.join(action.held_tags)})"
            table.add_row(
                action.image,
                "\n".join([", ".join(action.reasons), *action.details]),
                f"{action.method}: {action.why}" if action.why else action.method,
                f"{action.from_version or '-'} -> {action.to_version}",
                tags,
                end_section=position == len(group) - 1 and index < len(groups) - 1,
            )
    return FastTable(table)


def action_levels(plan: Plan) -> list[list[Action]]:
    """Actions grouped by dependency level inside the plan (a level needs only earlier ones).

    One pass over the actions (parents come first in a plan), with a dict by name:
    linear in the size of the plan.
    """
    level_of: dict[str, int] = {}
    grouped: dict[int, list[Action]] = {}
    for action in plan.actions:
        parents = [level_of[d] for d in action.depends_on if d in level_of]
        level = (max(parents) + 1) if parents else 0
        level_of[action.image] = level
        grouped.setdefault(level, []).append(action)
    return [grouped[k] for k in sorted(grouped)]


def github_matrix(plan: Plan) -> dict[str, Any]:
    """A matrix for fanning builds out over runners, one entry per image with its level.

    Workflows run one job per level (`strategy.matrix` filtered by `level`) or use
    `--only IMAGE` per entry inside a level; `levels` lists the images of each level.
    """
    include = []
    by_level = action_levels(plan)
    for level, group in enumerate(by_level):
        for action in group:
            include.append(
                {
                    "image": action.image,
                    "family": action.family,
                    "level": level,
                    "version": action.to_version,
                    "depends_on": list(action.depends_on),
                }
            )
    return {"include": include, "levels": [[a.image for a in group] for group in by_level]}


def github_matrix_json(plan: Plan) -> str:
    """The matrix as compact JSON (for `$GITHUB_OUTPUT`)."""
    return json.dumps(github_matrix(plan), separators=(",", ":"))


def plan_markdown(plan: Plan) -> str:
    """The plan as a Markdown table for `$GITHUB_STEP_SUMMARY`."""
    lines = ["## imagectl plan", "", summary_line(plan), ""]
    if plan.actions:
        lines += ["| image | reasons | version | tags |", "| --- | --- | --- | --- |"]
        for a in plan.actions:
            lines.append(
                f"| `{a.image}` | {', '.join(a.reasons)} | {a.from_version or '-'} → "
                f"{a.to_version} | {', '.join(f'`{t}`' for t in a.tags)} |"
            )
    return "\n".join(lines) + "\n"
