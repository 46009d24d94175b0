"""Command-line interface: parse, load config, call one library function, render with rich.

Each subcommand lives in ``deepmad_evo/commands/<name>.py`` exposing ``add_parser(subparsers)``
and ``run(args, console) -> int``. With no subcommand, ``search`` is assumed, so
``python run.py --budget 4.5G`` searches. Bad input ends with one line on stderr and status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    "presets": "deepmad_evo.commands.presets",
    "sample": "deepmad_evo.commands.sample",
    "study": "deepmad_evo.commands.study",
    "tune": "deepmad_evo.commands.tune",
}

EXIT_USAGE = 2

EPILOG = """\
Without a command, search runs:
  deepmad-evo --budget 4.5G [--params 29M] [--config mb-29m] [--rho 0.5] [--block …] [--seed 0] [--out DIR]
  --budget   MAC budget (K/M/G/T suffixes). Budgets are MACs, which the paper calls FLOPs.
  --config   preset (r18, r34, r50, mb-29m, mb-50m, mb-89m, b0, mbv2, tiny) or a TOML file;
             `deepmad-evo presets` lists them with their budgets and conventions.
  All search options: deepmad-evo search --help.  Each command: deepmad-evo COMMAND --help.

GENOTYPE arguments (inspect, build, export, train, cross-check) take a run directory, a genotype
JSON, a text form, a reference structure file, or a zoo name (r50, mb-29m, deepmad-r50-published, …).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, no usage dump
        raise SystemExit(_fail(f"{self.prog}: {message}"))


def _fail(message: str) -> int:
    from rich.console import Console
    from rich.markup import escape

    # Escaped: messages quote user input and commands such as pip install 'deepmad-evo[onnx]'.
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}", markup=True)
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="deepmad-evo", formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Design CNNs the DeepMAD way: search a network for a budget "
                     "(default command), inspect, build, export, train, cross-check and Pareto runs.",
                     epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"deepmad-evo {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "search")
    args = build_parser().parse_args(argv)
    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped output (logs, CI): rich would fall back to 80 columns and squash the tables.
        console = Console(highlight=False, width=140)
    try:
        status = importlib.import_module(COMMANDS[args.command]).run(args, console)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at interpreter exit
        return status
    except BrokenPipeError:
        # `inspect … --json | head`: the reader left. Quietly, with status 1 as rich does for its own output
        # (and as the Python docs advise); stdout goes to devnull so the exit-time flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        return 130
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        # User-facing errors are ValueErrors naming field, value and expectation.
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


if __name__ == "__main__":
    sys.exit(main())
