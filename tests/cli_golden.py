"""CLI output formats pinned as golden text (captured from main before the issue-11 restructure).

Run ``python tests/cli_golden.py`` to (re)capture; ``tests/test_cli_golden.py`` compares. Times and
progress bars vary run to run, so ``normalise`` masks them before comparing.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "data" / "cli_golden"
TEXT = "i64_c3_n10 stem_k3_s2_c16 mb_d2_k3_s2_b48_c24 head_c64"

# name -> argv (the out dir is filled in per run); each is deterministic for its seed.
CASES = {
    "inspect_text_budgets": ["inspect", TEXT, "--budget", "1M", "--params", "20K", "--rho", "0.5"],
    "inspect_zoo_r18_json": ["inspect", "{zoo}/r18.json", "--json", "--convention", "tinynas"],
    "inspect_zoo_b0_table": ["inspect", "{zoo}/b0.json", "--alpha", "1", "1", "1", "2", "4", "--beta", "5"],
    "inspect_zoo_r50_table": ["inspect", "{zoo}/r50.json", "--convention", "tinynas", "--budget", "4G"],
    "search_tiny": ["search", "--config", "tiny", "--seed", "3", "--out", "{out}/run", "--no-build"],
    "crosscheck_tiny_zoo": ["cross-check", "{zoo}/tiny.json", "--config", "tiny", "--starts", "1"],
    "pareto_tiny": ["pareto", "--config", "tiny", "--budget", "10M", "20M", "--jobs", "1", "--out", "{out}/p"],
    "crosscheck_tiny_zoo_json": ["cross-check", "{zoo}/tiny.json", "--config", "tiny", "--starts", "1", "--json"],
}


def normalise(text: str, out: str) -> str:
    from deepmad_evo.models import ZOO_DIR

    text = text.replace(out, "<OUT>").replace(str(ZOO_DIR), "<ZOO>")
    # Progress bars (rich draws them with ━ but never starts a line with a box character) vary with timing.
    lines = [ln.rstrip() for ln in text.splitlines() if "━" not in ln or ln.lstrip()[:1] in "┏┡┗"]
    text = "\n".join(lines)
    text = re.sub(r"\d+(\.\d+)? s\b", "<T> s", text)
    text = re.sub(r'"(\w*seconds|elapsed)": [0-9.e+-]+', r'"\1": "<T>"', text)
    # pareto "search s" (one decimal): the cell keeps its width whatever the number of digits, since a slower
    # machine prints more of them; other numeric last cells are masked as before.
    text = re.sub(r"│( +)([0-9.]+) │$", lambda m: "│" + ("<T>".rjust(len(m.group(1) + m.group(2)))
                                                         if re.fullmatch(r"\d+\.\d", m.group(2))
                                                         else m.group(1) + "<T>") + " │", text, flags=re.M)
    return text


def run_case(name: str, out: Path) -> tuple[int, str]:
    from deepmad_evo import cli
    from deepmad_evo.models import ZOO_DIR

    argv = [a.format(zoo=ZOO_DIR, out=out) for a in CASES[name]]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(argv)
    # The zoo's absolute path differs between checkouts.
    return rc, normalise(buf.getvalue().replace(str(ZOO_DIR), "<ZOO>"), str(out))


if __name__ == "__main__":
    import tempfile

    for name in sys.argv[1:] or CASES:
        with tempfile.TemporaryDirectory() as tmp:
            rc, text = run_case(name, Path(tmp))
        assert rc == 0, (name, rc, text)
        (GOLDEN / f"{name}.txt").write_text(text + "\n")
        print(name, len(text))
