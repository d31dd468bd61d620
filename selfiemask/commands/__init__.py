"""The ``selfiemask`` command (also ``python -m selfiemask``): one module per subcommand.

Each of :mod:`.train`, :mod:`.predict`, :mod:`.watch`, :mod:`.clean` and :mod:`.restore` has
``add_parser(subparsers)`` and ``run(args) -> exit status``, and holds no logic
of its own: it parses, calls the package and prints. They are imported when
the command runs, so ``import selfiemask.commands`` stays cheap.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["COMMANDS", "DISTRIBUTED_HELP", "main", "safe_output"]

DISTRIBUTED_HELP = "one of several processes started by torchrun or accelerate launch (see docs/distributed.md)"
#: The subcommands, in the order ``--help`` lists them; each is a module of this package.
COMMANDS = ("train", "predict", "watch", "clean", "restore")


def safe_output() -> None:
    """Never crash on printing a file name: one that is not valid UTF-8 (kept by Python as surrogate escapes)
    is written with backslash escapes (``caf\\udce9.jpg``), on stdout and stderr alike, whatever the locale."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    from .predict import dash_file_hint

    safe_output()
    hint = dash_file_hint(sys.argv[1:] if argv is None else argv)
    if hint:
        print(hint, file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="selfiemask", description="Mask / no mask, per face, for selfies.")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {name: importlib.import_module(f"{__name__}.{name}") for name in COMMANDS}
    for module in modules.values():
        module.add_parser(sub)
    args = parser.parse_args(argv)
    return modules[args.command].run(args)
