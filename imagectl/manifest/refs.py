"""Reference-like manifest values (base refs, `from:` refs, `registry:`), normalised once.

Decided rules (docs/manifest-loading.md):

- Whitespace around a reference is refused, never stripped: no reference grammar
  has it, so it is a paste error the user should see where it is.
- A registry host is lowercased (`LOCALHOST:5000` -> `localhost:5000`,
  `Registry.Example` -> `registry.example`): DNS names are case-insensitive, so
  the meaning is unchanged, and everything downstream (loopback detection,
  credentials, lock records) compares hosts as text. Only a first component
  that is a host once lowercased (it has a `.` or a `:`, or is `localhost`) is
  touched; the repository path keeps its case, and an uppercase path is refused
  by the reference grammar as before.
"""

from __future__ import annotations

from imagectl.domain.reference import InvalidReferenceError


def _refuse_padding(text: str, what: str) -> None:
    if text != text.strip():
        raise InvalidReferenceError(f"{what} {text!r} has spaces around it (remove them)")


def lower_host(text: str) -> str:
    """`text` with its registry host (if it names one) in lowercase."""
    first, slash, rest = text.partition("/")
    lowered = first.lower()
    if slash and ("." in lowered or ":" in lowered or lowered == "localhost"):
        return f"{lowered}/{rest}"
    return text


def normalise_reference(text: str) -> str:
    """A base reference as imagectl uses it; raises InvalidReferenceError when padded."""
    _refuse_padding(text, "image reference")
    return lower_host(text)


def normalise_registry(text: str) -> str:
    """A `registry:` push prefix as imagectl uses it; raises InvalidReferenceError when padded."""
    _refuse_padding(text, "registry")
    return lower_host(text) if "/" in text else lower_host(f"{text}/").removesuffix("/")
