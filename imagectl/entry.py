"""The console script's entry point: `--version` and `--help` without the CLI framework.

Importing typer and click costs several times a bare Python start, so the two
answers a user asks for most are served from here: the version constant, and
the top-level help text that `imagectl.cli.render_help` generates from the real
command tree (committed as `help.txt`; a unit test keeps it current).
Everything else goes to `imagectl.cli.main`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from imagectl import __version__

HELP_FILE = Path(__file__).with_name("help.txt")


def main() -> None:
    """Console-script entry point."""
    args = sys.argv[1:]
    if args == ["--version"]:
        sys.stdout.write(f"imagectl {__version__}\n")
        sys.exit(0)
    if args in (["--help"], ["-h"]):
        try:
            text = HELP_FILE.read_text(encoding="utf-8")
        except OSError:
            text = ""  # not installed with the package data: let the framework render it
        if text:
            sys.stdout.write(text)
            sys.exit(0)
    from imagectl.cli import main as cli_main

    cli_main()
