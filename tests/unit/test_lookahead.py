"""apply/lookahead.py: the adopt producer's version-tag looks, sent when the run starts."""

from __future__ import annotations

import threading
from typing import cast

from imagectl.apply.lookahead import VersionTagLookahead
from imagectl.registry import ManifestInfo, Reference, RegistryClient, parse_reference


class Registry:
    """head_manifest of a client: `a` holds a build, the rest nothing; `gate` holds them."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.mutex = threading.Lock()

    def head_manifest(self, ref: Reference) -> ManifestInfo | None:
        assert self.gate.wait(10)
        with self.mutex:
            self.asked.append(ref.repository)
        if ref.repository.endswith("/a"):
            return ManifestInfo(digest="sha256:" + "a" * 64, media_type="x", size=1)
        return None


def refs(*names: str) -> dict[str, Reference]:
    return {n: parse_reference(f"127.0.0.1:5000/acme/{n}:1.0.0") for n in names}


def test_every_look_is_sent_at_the_first_take_and_handed_out_once() -> None:
    registry = Registry()
    ahead = VersionTagLookahead(cast(RegistryClient, registry), refs("a", "b", "c"))
    assert registry.asked == []  # nothing is sent before the run asks
    a = ahead.take("a")
    assert a is not None and a.result() is not None
    c = ahead.take("c")
    assert c is not None and c.result() is None
    ahead.take("b").result()  # type: ignore[union-attr]
    assert sorted(registry.asked) == ["acme/a", "acme/b", "acme/c"]
    assert ahead.take("a") is None  # a second look (before a push) asks the registry again
    assert ahead.take("unknown") is None
    ahead.close()


def test_close_drops_the_looks_nobody_took_without_waiting() -> None:
    registry = Registry()
    registry.gate.clear()  # the registry answers nothing until the end of the test
    names = [f"img{i}" for i in range(20)]
    ahead = VersionTagLookahead(cast(RegistryClient, registry), refs(*names))
    assert ahead.take("img0") is not None
    ahead.close()  # returns at once: the queued looks are cancelled
    assert ahead.take("img1") is None
    registry.gate.set()
    assert ahead._pool is not None
    ahead._pool.shutdown(wait=True)  # the workers are done
    assert len(registry.asked) <= 2  # only the looks already on the two workers were sent
