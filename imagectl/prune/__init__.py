"""Registry retention (`imagectl prune`): delete old versions of the manifest's images.

Per image, among its version tags (``X.Y.Z`` for ``bump: patch``, ``X.Y.Z-rN`` for
``bump: revision``), the newest ``--keep`` versions stay, and with ``--older-than``
so does every version younger than that. Whatever the count or the age, a version
is never deleted when its digest is

- the lock's current record of the image,
- pointed at by a floating tag shared between versions (``{major}.{minor}``,
  ``latest``, a tag set by hand); a tag only that version carries
  (``{version}-{base_tag}``, ``{date}``, ``{sha}``: see `own_tags`) goes with it,
- the base of a kept version of another image (its ``base.digest`` label) or of a
  lock record,
- shared with a kept version (a DELETE by digest removes every tag on it).

`policy` is the pure decision (`select_prunable`, `prune_images`); `command` reads
the registry and the lock, renders, and deletes with ``--apply``.
"""

from __future__ import annotations

from imagectl.prune.command import prune_command

__all__ = ["prune_command"]
