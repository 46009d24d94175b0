"""Command-line interface: parse, load config, call one library function, render with rich.

Each subcommand lives in ``deepmad_evo/commands/<name>.py`` exposing ``add_parser(subparsers)``
and ``run(args, console) -> int``. With no subcommand, ``search`` is assumed, so
``python run.py --budget 4.5G`` searches. Bad input ends with one line on stderr and status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module; each module registers its own arguments.
COMMANDS = {
    "search": "deepmad_evo.commands.search",
    "inspect": "deepmad_evo.commands.inspect",
    "pareto": "deepmad_evo.commands.pareto",
    "build": "deepmad_evo.commands.build",
    "export": "deepmad_evo.commands.export",
    "train": "deepmad_evo.commands.train",
    "evaluate": "deepmad_evo.commands.evaluate",
    "cross-check": "deepmad_evo.commands.crosscheck",
    "profile": "deepmad_evo.commands.profile",
    "sample": "deepmad_evo.commands.sample",
    "study": "deepmad_evo.commands.study",
    "tune": "deepmad_evo.commands.tune",
}

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, no usage dump
        raise SystemExit(_fail(f"{self.prog}: {message}"))


def _fail(message: str) -> int:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {message}", markup=True)
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deepmad-evo", description="Design CNNs the DeepMAD way: search a network for a budget "
                     "(default command), inspect, build, export, train, cross-check and Pareto runs.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "search")
    args = build_parser().parse_args(argv)
    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped output (logs, CI): rich would fall back to 80 columns and squash the tables.
        console = Console(highlight=False, width=140)
    try:
        return importlib.import_module(COMMANDS[args.command]).run(args, console)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        return 130
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        # User-facing errors are ValueErrors naming field, value and expectation.
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


if __name__ == "__main__":
    sys.exit(main())
