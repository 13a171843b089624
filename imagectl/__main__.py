from __future__ import annotations

from imagectl.cli import main

main()
