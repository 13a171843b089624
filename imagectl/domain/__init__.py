"""Pure domain helpers shared by the manifest, the plan and the registry client.

Versions and bumps, tag templates, schedules, the image graph and image references:
no I/O, no imagectl package beneath them but ``imagectl.errors``, so ``manifest/``,
``plan/`` and ``registry/`` all import them without a package cycle.
"""
