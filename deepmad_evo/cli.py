"""Command-line interface: parse, load config, call one library function, render with rich.

Each subcommand lives in ``deepmad_evo/commands/<name>.py`` exposing ``add_parser(subparsers)``
and ``run(args, console) -> int``. With no subcommand, ``search`` is assumed, so
``python run.py --budget 4.5G`` searches. Bad input ends with one line on stderr and status 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import signal
import sys
import threading
from pathlib import Path

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
EXIT_BUG = 1
EXIT_INTERRUPTED = 130
# The reader of our output went away: status 1, as Python's documentation on SIGPIPE advises.
EXIT_PIPE = 1
# Longest error line printed (values inside are already cut by their raisers; this is the backstop).
MAX_MESSAGE = 500

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
        # "argument --rho: invalid float value: 'x'" -> "--rho: invalid float value: 'x'"
        m = re.match(r"argument ([^:]+): (.*)", message, re.S)
        raise SystemExit(_fail(f"{m.group(1)}: {m.group(2)}" if m else f"{self.prog}: {message}"))


def _fail(message: str, status: int = EXIT_USAGE) -> int:
    """Print ``error: <message>`` as one line on stderr, never read as rich markup; return ``status``."""
    line = " ".join(message.split("\n")[0].split()) or "failed"
    if len(line) > MAX_MESSAGE:
        line = line[: MAX_MESSAGE - 1] + "…"
    try:
        from rich.console import Console
        from rich.text import Text

        Console(stderr=True, highlight=False, soft_wrap=True).print(Text.assemble(("error:", "bold red"), " ", line))
    except Exception:  # noqa: BLE001 - the last line of defence must not raise
        sys.stderr.write(f"error: {line}\n")
    return status


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


_signalled = threading.Event()


def _on_signal(signum, frame):
    # The first Ctrl-C / SIGTERM stops the run; any later one is ignored (to the process's end) so
    # that the teardown (workers, temp files) finishes and nothing more is printed.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    _signalled.set()
    raise KeyboardInterrupt


def _install_signals():
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input or environment, 130 interrupted,
    1 an internal error, whose traceback is written to a file, or a closed output pipe)."""
    _signalled.clear()
    previous = _install_signals()
    try:
        return _main(argv)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # argparse --help / errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else _fail(str(exc.code)))
    except BaseException as exc:  # noqa: BLE001 - the one error boundary
        return _report(exc)
    finally:
        if argv is None and previous:
            # The command line as a process: the run is over and its results are written, so a
            # Ctrl-C that lands during the interpreter's teardown must not turn exit 0 into death
            # by SIGINT (status -2); it is ignored to the process's end.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
        elif not _signalled.is_set():  # a caller in-process gets its handlers back
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _main(argv) -> int:
    from rich.console import Console

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "search")
    args = build_parser().parse_args(argv)
    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped output (logs, CI): rich would fall back to 80 columns and squash the tables.
        console = Console(highlight=False, width=140)
    return importlib.import_module(COMMANDS[args.command]).run(args, console)


def _report(exc: BaseException) -> int:
    """One line for an expected failure (status 2); a bug report line and a traceback file otherwise."""
    if isinstance(exc, BrokenPipeError):
        # The reader of our output went away (``| head``): nothing to say, nowhere to say it.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_PIPE
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return _fail("out of memory for the requested size (expected a smaller network, image size, batch or "
                     "population)")
    if isinstance(exc, RecursionError):
        return _fail("input nested too deeply (expected a plain genotype / config file)")
    if isinstance(exc, OSError) and not isinstance(exc, (ValueError,)):
        return _fail(_os_message(exc))
    if isinstance(exc, ValueError):
        # User-facing errors are ValueErrors naming field, value and expectation.
        return _fail(str(exc) or type(exc).__name__)
    if isinstance(exc, ModuleNotFoundError):
        return _fail(f"{exc.name}: not installed (expected the package; see README for the extras)")
    return _bug(exc)


def _os_message(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else None
    what = exc.strerror or str(exc) or type(exc).__name__
    hint = {errno.ENOSPC: "expected free space on the disk", errno.EDQUOT: "expected free disk quota",
            errno.EROFS: "expected a writable file system", errno.EACCES: "expected a path you may write or read",
            errno.EPERM: "expected a path you may write or read", errno.ENOTDIR: "expected a directory on the path",
            errno.EISDIR: "expected a file, not a directory", errno.ENOENT: "expected an existing path",
            errno.EEXIST: "expected a free path", errno.ENAMETOOLONG: "expected a shorter path"}.get(exc.errno)
    text = f"{what}" + (f" ({hint})" if hint else "")
    return f"{where}: {text}" if where is not None else text


def _bug(exc: BaseException) -> int:
    import tempfile
    import time
    import traceback

    text = "".join(traceback.format_exception(exc))
    worker = getattr(exc, "worker_traceback", None)
    if worker:
        text += "\nIn the worker process:\n" + worker
    path = Path(tempfile.gettempdir()) / f"deepmad-evo-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    try:
        path.write_text(f"deepmad-evo {' '.join(sys.argv)}\n\n{text}")
        where = f"full traceback in {path}"
    except OSError:
        where = "no traceback file could be written"
    return _fail(f"internal error (a bug in deepmad_evo, please report it): {type(exc).__name__}: "
                 f"{str(exc)[:200]}; {where}", EXIT_BUG)


if __name__ == "__main__":
    sys.exit(main())
