from __future__ import annotations

from imagectl.entry import main

main()
