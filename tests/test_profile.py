"""`run.py profile` for real on a very small space: table written, resumed, foreign table refused, cuda refused."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepmad_evo.latency.model import LatencyModel
from deepmad_evo.latency.plan import plan_cells
from deepmad_evo.latency.table import load_table

pytestmark = pytest.mark.torch

RUN = str(Path(__file__).resolve().parents[1] / "run.py")

SMALL = """name = "small"
[template]
image_size = 16
num_classes = 4
blocks = ["mbconv_se", "mbconv_se"]
strides = [2, 1]
head = 0
[space]
stem_channels = [8, 16, 8]
channels = [8, 16, 8]
expansion = [1.5, 2.0, 0.5]
kernels = [3]
depth = [1, 2]
[budget]
macs = "off"
params = "off"
"""


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, RUN, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_profile_writes_resumes_and_refuses(tmp_path):
    from deepmad_evo.config import load_config
    from deepmad_evo.latency.profile import Timing, profile
    from deepmad_evo.latency.table import LatencyTableError, Settings

    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    cfg = load_config(str(path))
    out = tmp_path / "t.json"
    # One real CLI run (progress bar, summary), then the library for the rest: each CLI start imports torch.
    p = cli("profile", "--config", path, "--rounds", "3", "--networks", "4", "--out", out)
    assert p.returncode == 0, p.stderr
    assert "ops and 4 networks timed" in p.stdout and "load" in p.stdout
    table = load_table(out)
    assert set(table.ops) == {c.key for c in plan_cells(cfg.search_space())}
    assert len(table.networks) == 4 and table.presets == ["small"]
    assert table.settings.threads == 1 and table.timing["rounds"] == 3 and table.timing["clock"] == "thread"
    assert all(v["seconds"] > 0 and v["noise"] >= 0 for v in table.ops.values())
    assert "torch" in table.versions and table.profile_seconds > 0
    LatencyModel(table).check_space(cfg.search_space())

    events = []
    again = profile([cfg], Settings(), out, timing=Timing(rounds=3), networks=4, callback=events.append)
    assert events[0]["skipped"] == len(table.ops) and again.ops == table.ops  # resumed: nothing re-timed
    with pytest.raises(LatencyTableError, match="batch 2"):
        profile([cfg], Settings(batch=2), out, networks=0)
    data = json.loads(out.read_text())
    data["device"]["name"] = "Some Other CPU"
    out.write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match="Some Other CPU"):
        profile([cfg], Settings(), out, networks=0)
    forced = profile([cfg], Settings(), out, timing=Timing(rounds=3, min_sample=1e-4), networks=0, force=True)
    assert forced.device["name"] != "Some Other CPU" and set(forced.ops) == set(table.ops)


def test_profile_cuda_refused_cleanly_without_a_gpu(tmp_path):
    import torch

    from deepmad_evo.config import load_config
    from deepmad_evo.latency.profile import profile
    from deepmad_evo.latency.table import LatencyTableError, Settings

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the refusal path does not apply")
    with pytest.raises(LatencyTableError, match="CUDA is not available") as exc:
        profile([load_config("tiny")], Settings(device="cuda"), tmp_path / "t.json")
    assert "\n" not in str(exc.value) and not (tmp_path / "t.json").exists()
