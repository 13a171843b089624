"""Safe display of untrusted text (registry replies, labels, server messages).

Text that a registry or an image controls must not be able to forge output:
no terminal escapes (ANSI, OSC-8 hyperlinks), no extra lines, no rich markup,
and no line starting with ``::`` that a GitHub Actions runner would read as a
workflow command. `clean` makes free text inert; `for_rich` also escapes it for
rich markup. Grammar-bound strings (digests, tags, references) are validated
by the registry client instead and never need cleaning.
"""

from __future__ import annotations

import re

from rich.markup import escape

# C0/C1 controls, DEL, and the Unicode format characters that reorder or hide
# text (bidi overrides and isolates, zero-width characters, line/paragraph
# separators, lone surrogates). Tab is included: it becomes `\t` like every other control.
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)
_COLONS = re.compile(r":(?=:)")
DEFAULT_LIMIT = 500


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}
    if char in named:
        return named[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: object, limit: int = DEFAULT_LIMIT) -> str:
    """`text` made inert for a log line: controls shown as escapes, one line, bounded.

    Control characters (ESC, newlines, C1, bidi overrides …) become visible escapes
    such as ``\\e`` or ``\\n``; ``::`` becomes ``: :`` so no part of it can start a
    GitHub workflow command; text longer than `limit` is cut with ``…``.
    """
    value = str(text)
    if len(value) > limit * 4:  # bound the work before the regex runs
        value = value[: limit * 4]
    value = _COLONS.sub(": ", _UNSAFE.sub(_visible, value))
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


def for_rich(text: object, limit: int = DEFAULT_LIMIT) -> str:
    """`clean(text)` escaped for rich markup (``[/]`` prints as ``[/]``)."""
    return escape(clean(text, limit))


def is_clean(text: str) -> bool:
    """True when `text` holds nothing that `clean` would change (no controls, no ``::``)."""
    return _UNSAFE.search(text) is None and "::" not in text
