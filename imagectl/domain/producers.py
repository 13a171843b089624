"""How an image of a plan is produced (docs/design.md section 7). Pure: no I/O."""

from __future__ import annotations

from enum import StrEnum


class Producer(StrEnum):
    """What puts an image under its immutable tag.

    `build` runs the image's builder and lets it push; `rebase` puts the old image's
    own layers on the new base with manifest and config PUTs; `adopt` takes an
    identical build already under the tag (an earlier run's push, or a rival's).
    """

    BUILD = "build"
    ADOPT = "adopt"
    REBASE = "rebase"
