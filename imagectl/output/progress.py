"""Apply progress: a live table on a terminal, plain lines elsewhere; the final summary."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from imagectl.apply.protocol import Outcome
from imagectl.apply.steps import OutcomeState, StepEvent, StepName
from imagectl.domain.producers import Producer
from imagectl.output.plaintable import FastTable, plain_line
from imagectl.plan.model import Action

# What an image is doing while a step runs (its `begun` event), by step; the producing
# step by producer.
DOING = {
    StepName.START: "starting",
    StepName.ADOPTED: "adopting",
    StepName.PUSHED: "pushing",
    StepName.VERIFIED: "verifying",
    StepName.SIGNED: "signing and attesting",
    StepName.TAGGED: "tagging",
    StepName.RECORDED: "recording",
}
PRODUCING = {
    Producer.BUILD: "building",
    Producer.REBASE: "rebasing",
    Producer.ADOPT: "looking for an earlier push",
}
# Words for the end of an image: its last step, or the state it ended in.
ENDED = {
    StepName.RECORDED: "done",
    OutcomeState.SKIPPED: "skipped",
    OutcomeState.CANCELLED: "cancelled",
    OutcomeState.FAILED: "failed",
}


def describe(event: StepEvent | OutcomeState) -> str | None:
    """The word for `event`; None for a finished step that changes nothing shown."""
    if isinstance(event, OutcomeState):
        return ENDED.get(event, str(event))
    if not event.begun:
        return ENDED.get(event.step)
    if event.step is StepName.BUILT:
        return PRODUCING.get(Producer(event.detail), "building") if event.detail else "building"
    word = DOING.get(event.step, str(event.step))
    return f"{word} {event.detail}" if event.detail else word


# A live view of more images than this shows only those in flight, and counts the rest.
LIVE_ROWS = 30
_FINISHED = frozenset({"done", "skipped", "cancelled", "failed"})


def _phase(word: str, started: bool) -> str:
    """`waiting`, `in flight`, or the final word (`done`, `failed`, …)."""
    if word in _FINISHED:
        return word
    return "in flight" if started else "waiting"


class Progress:
    """Receives (image, step) events from worker threads and shows them.

    On a terminal a live table is redrawn at most 4 times a second from the current
    state (an event only records it: a plan of 2,000 images is not redrawn per event);
    elsewhere each event is one plain line.
    """

    def __init__(self, console: Console, actions: Iterable[Action]) -> None:
        self.console = console
        self.actions = list(actions)
        self.state = {a.image: "waiting" for a in self.actions}
        self.started: dict[str, float] = {}
        self.mutex = threading.Lock()
        self.live: Live | None = None
        if console.is_terminal:
            self.live = Live(
                console=console,
                refresh_per_second=4,
                transient=True,
                get_renderable=self._view,
            )

    def __enter__(self) -> Progress:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.__exit__(exc_type, exc, tb)

    def _view(self) -> RenderableType:
        """The live view: every image, or for a big plan those in flight and a count line."""
        with self.mutex:
            state, started = dict(self.state), dict(self.started)
        if len(self.actions) <= LIVE_ROWS:
            return self._table(self.actions, state, started)
        phase = {a.image: _phase(state[a.image], a.image in started) for a in self.actions}
        shown = [a for a in self.actions if phase[a.image] == "in flight"]
        counts = Counter(phase.values())
        line = ", ".join(f"{n:,} {word}" for word, n in sorted(counts.items()))
        return Group(self._table(shown, state, started), Text(line))

    @staticmethod
    def _table(
        shown: Iterable[Action], state: Mapping[str, str], started: Mapping[str, float]
    ) -> Table:
        table = Table(show_header=True, header_style="bold", box=None)
        for column in ("image", "version", "state", "elapsed"):
            table.add_column(column)
        now = time.monotonic()
        for action in shown:
            since = started.get(action.image)
            elapsed = f"{now - since:5.1f}s" if since is not None else ""
            table.add_row(action.image, action.to_version, state[action.image], elapsed)
        return table

    def __call__(self, image: str, event: StepEvent | OutcomeState) -> None:
        word = describe(event)
        with self.mutex:
            if event == StepEvent(StepName.START):
                self.started[image] = time.monotonic()
            if word is None:
                return
            self.state[image] = word
            started = self.started.get(image)
        if self.live is None:
            elapsed = f" ({time.monotonic() - started:.1f}s)" if started is not None else ""
            self._line(f"{image}: {word}{elapsed}")

    def _line(self, text: str) -> None:
        """One progress line: written as it is when rich would print it unchanged (off a
        terminal; about 40 times cheaper than `Console.print`), else printed by rich."""
        console = self.console
        if not plain_line(console, text):
            console.print(text, highlight=False)
            return
        with self.mutex:
            file = console.file
            file.write(text + "\n")
            file.flush()


def summary_table(actions: Iterable[Action], outcomes: dict[str, Outcome]) -> FastTable:
    """image, old -> new version, digest, tags, state, duration (printed without rich's
    per-cell rendering off a terminal: plaintable.py)."""
    table = Table(header_style="bold", title="imagectl apply")
    for column in ("image", "version", "digest", "tags", "state", "duration"):
        table.add_column(column, overflow="fold")
    for action in actions:
        outcome = outcomes[action.image]
        duration = ""
        if outcome.started is not None and outcome.finished is not None:
            duration = f"{outcome.finished - outcome.started:.1f}s"
        tags = [action.immutable_tag, *outcome.tags_moved] if outcome.digest else []
        state = str(outcome.state)
        if outcome.state is OutcomeState.BUILT and outcome.method is Producer.REBASE:
            state = "built (rebased)"
        if outcome.tags_held:
            state += f" (kept: {', '.join(outcome.tags_held)})"
        table.add_row(
            action.image,
            f"{action.from_version or '-'} -> {action.to_version}",
            (outcome.digest or "")[:19],
            ", ".join(tags),
            state,
            duration,
        )
    return FastTable(table)


def summary_counts(outcomes: dict[str, Outcome]) -> str:
    """`Apply: 3 built, 1 adopted, 0 failed, 0 skipped.`"""
    counts = {k: 0 for k in ("built", "adopted", "failed", "skipped", "cancelled")}
    for outcome in outcomes.values():
        counts[outcome.state] = counts.get(outcome.state, 0) + 1
    text = ", ".join(f"{v} {k}" for k, v in counts.items() if v or k in ("built", "failed"))
    return f"Apply: {text}."
