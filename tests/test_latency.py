"""Latency tables and the latency model: format, validation, interpolation, vectorised == scalar."""

import json
import math

import numpy as np
import pytest

from deepmad_evo.config import load_config
from deepmad_evo.genotype import Genotype
from deepmad_evo.latency.model import FORMS, LatencyModel, network_ops
from deepmad_evo.latency.ops import work
from deepmad_evo.latency.plan import grid, plan_cells
from deepmad_evo.latency.table import (FORMAT, LatencyTableError, Settings, host_fingerprint, load_table,
                                       table_from_dict)
from deepmad_evo.units import expand

from tests.latency_synth import exact_seconds, op_time, synthetic_table

PRESETS = ("tiny", "r18", "r50", "mbv2", "mb-29m")


@pytest.fixture(scope="module")
def tiny_table():
    return synthetic_table([load_config("tiny")])


def test_table_round_trip(tmp_path, tiny_table):
    path = tmp_path / "t.json"
    tiny_table.save(path)
    back = load_table(path)
    assert back.to_dict() == tiny_table.to_dict()
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT
    assert data["settings"] == {"device": "cpu", "batch": 1, "precision": "fp32", "threads": 1, "channels_last": False}
    assert set(data["device"]) == {"kind", "name", "arch", "cores"}
    assert len(data["ops"]) == len(plan_cells(load_config("tiny").search_space()))


def _corrupt(data, how):
    d = json.loads(json.dumps(data))
    how(d)
    return d


CORRUPTIONS = {
    "format": (lambda d: d.update(format="deepmad-evo/latency-table/9"), "format"),
    "no ops": (lambda d: d.pop("ops"), "ops: missing"),
    "negative": (lambda d: d["ops"][0].__setitem__(7, -1.0), "ops[0].seconds"),
    "zero": (lambda d: d["ops"][0].__setitem__(7, 0), "ops[0].seconds"),
    "nan": (lambda d: d["ops"][1].__setitem__(7, float("nan")), "ops[1].seconds"),
    "short row": (lambda d: d["ops"].__setitem__(2, d["ops"][2][:5]), "ops[2]"),
    "unknown op": (lambda d: d["ops"][0].__setitem__(0, "matmul"), "ops[0].op"),
    "duplicate": (lambda d: d["ops"].append(list(d["ops"][0])), "duplicate"),
    "precision": (lambda d: d["settings"].__setitem__("precision", "fp8"), "precision"),
    "threads": (lambda d: d["settings"].__setitem__("threads", 0), "threads"),
    "device": (lambda d: d["device"].__setitem__("kind", "tpu"), "device"),
    "network": (lambda d: d["networks"].append({"text": "x", "seconds": "fast"}), "networks[0].seconds"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_tables_are_refused_with_one_line(name, tiny_table):
    how, field = CORRUPTIONS[name]
    with pytest.raises(LatencyTableError) as exc:
        table_from_dict(_corrupt(tiny_table.to_dict(), how))
    msg = str(exc.value)
    assert field in msg and "\n" not in msg


def test_unreadable_files_are_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LatencyTableError, match="not valid JSON"):
        load_table(bad)
    with pytest.raises(LatencyTableError, match="does not exist"):
        load_table(tmp_path / "missing.json")
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(LatencyTableError, match="expected a JSON object"):
        load_table(bad)


def test_foreign_table_and_other_settings_are_refused(tiny_table):
    here = host_fingerprint("cpu")
    tiny_table.check_host(here, Settings())
    for change in ({"name": "Some Other CPU"}, {"cores": here["cores"] + 64}, {"kind": "cuda"}):
        with pytest.raises(LatencyTableError, match="measured on"):
            tiny_table.check_host({**here, **change})
    with pytest.raises(LatencyTableError, match="batch 8"):
        tiny_table.check_host(here, Settings(batch=8))


def test_profile_refuses_foreign_table_unless_forced(tmp_path, tiny_table):
    from deepmad_evo.latency.profile import Timing, open_table

    path = tmp_path / "t.json"
    foreign = table_from_dict(tiny_table.to_dict())
    foreign.device = {**foreign.device, "name": "Another CPU"}
    foreign.save(path)
    with pytest.raises(LatencyTableError, match="Another CPU"):
        open_table(path, Settings(), host_fingerprint("cpu"), Timing(), force=False)
    fresh = open_table(path, Settings(), host_fingerprint("cpu"), Timing(), force=True)
    assert fresh.ops == {} and fresh.device == host_fingerprint("cpu")


def test_grid_is_geometric_and_covers_the_range():
    assert grid(8, 2048) == [8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    assert grid(16, 64) == [16, 32, 64]
    assert grid(8, 12288)[-2:] == [8192, 12288]
    assert grid(3, 3) == [3]


def test_model_reproduces_timed_cells_exactly(tiny_table):
    model = LatencyModel(tiny_table)
    for key, v in list(tiny_table.ops.items())[::7]:
        op, k, s, r, extra, c_a, c_b = key
        from deepmad_evo.latency.ops import OpUse

        got = float(model.op_seconds(OpUse(op, k, s, r, extra, c_a, c_b)))
        assert got == pytest.approx(v["seconds"], rel=1e-12)


def test_model_extrapolates_at_constant_time_per_work(tiny_table):
    from deepmad_evo.latency.ops import OpUse

    model = LatencyModel(tiny_table)
    # The largest timed dw cell of a slice, and twice its channels beyond the grid: time doubles with work.
    cells = [k for k in tiny_table.ops if k[0] == "dw" and k[1] == 3 and k[3] == 16 and k[2] == 1]
    top = max(cells, key=lambda k: k[5])
    use = OpUse("dw", 3, 1, 16, "", top[5])
    t1, t2 = float(model.op_seconds(use)), float(model.op_seconds(use._replace(c_a=2 * top[5])))
    assert t2 / t1 == pytest.approx(2.0, rel=1e-9)


def test_model_tracks_a_known_formula_between_grid_points(tiny_table):
    """Off the grid the interpolation stays within a few percent of the formula the table was made from."""
    cfg = load_config("tiny")
    space = cfg.search_space()
    model = LatencyModel(tiny_table, "sum")
    rng = np.random.default_rng(1)
    X = space.repair_monotone(space.sample(40, rng))
    for x in X:
        net = expand(space.genotype(x))
        exact = sum(exact_seconds(ops) for ops in network_ops(net))
        assert sum(model.predict_units(net)) == pytest.approx(exact, rel=0.06)


@pytest.mark.parametrize("preset", PRESETS)
def test_vectorised_equals_scalar(preset):
    cfg = load_config(preset)
    space = cfg.search_space()
    table = synthetic_table([cfg], networks=5, overhead=(1.3, 4e-5, 2e-4))
    model = LatencyModel(table, "affine")
    rng = np.random.default_rng(0)
    X = space.repair_monotone(space.sample(300, rng))
    X[:20, 1:1 + space.num_stages] = X[:20, 1:2]  # equal channels: mobile identity residuals, pooled too
    one = np.array([model.predict(space.genotype(x)) for x in X[:40]])
    # Large populations go through the lookup tables, small ones through the interpolation itself.
    for pop in (model.predict_population(space.template, *space.decode(X))[:40],
                model.predict_population(space.template, *space.decode(X[:40])),
                model.compile(space)(X)[:40]):  # the search's lookup tables
        np.testing.assert_allclose(pop, one, rtol=1e-10)


def test_overhead_form_is_chosen_by_leave_one_out_and_recovered():
    cfg = load_config("tiny")
    table = synthetic_table([cfg], networks=8, overhead=(1.0, 3e-4, 1e-3))
    model = LatencyModel(table)
    assert set(model.selection) == set(FORMS)
    assert model.form == "offset" and model.selection["offset"] < 1e-9
    a, b, c = model.coef
    assert (a, b, c) == (1.0, pytest.approx(3e-4, rel=1e-6), pytest.approx(1e-3, rel=1e-6))
    # Per-unit shares and the rest add up to the total.
    g = Genotype.from_text(table.networks[0]["text"])
    assert sum(model.predict_units(g)) + model.rest_seconds(g) == pytest.approx(table.networks[0]["seconds"])


def test_a_table_without_the_space_names_what_is_missing():
    model = LatencyModel(synthetic_table([load_config("tiny")]))
    with pytest.raises(LatencyTableError, match="no timings of act s1 relu"):
        model.predict(load_config("r50").search_space().genotype(load_config("r50").search_space().bounds[0]))


def test_feature_size_is_interpolated_between_timed_sides(tiny_table):
    from deepmad_evo.latency.ops import OpUse

    model = LatencyModel(tiny_table)
    sides = sorted({k[3] for k in tiny_table.ops if k[0] == "act"})
    lo, hi = sides[0], sides[1]
    mid = int(round(math.sqrt(lo * hi)))
    use = OpUse("act", 0, 1, lo, "silu", 64)
    t_lo, t_hi = (float(model.op_seconds(use._replace(r=r))) for r in (lo, hi))
    t_mid = float(model.op_seconds(use._replace(r=mid)))
    assert min(t_lo, t_hi) < t_mid < max(t_lo, t_hi)
    assert op_time(work("act", 0, 1, mid, "silu", 64, 0)) == pytest.approx(t_mid, rel=0.1)


@pytest.mark.torch
@pytest.mark.parametrize("preset", ("tiny", "c100-r20", "r50"))
def test_timed_ops_are_what_the_decoder_builds(preset):
    """Each unit's timed ops (read from ``Unit.ops``) match the modules ``model.py`` builds for it, counted there."""
    from torch import nn
    from torchvision.ops import SqueezeExcitation

    from deepmad_evo.model import build_model

    space = load_config(preset).search_space()
    X = np.stack([space.bounds[0], space.repair_monotone(space.sample(1, np.random.default_rng(4)))[0]])
    if preset == "r50":  # the smallest network only: random r50 designs take seconds to build
        X = X[:1]
    for x in X:
        g = space.genotype(x)
        net = build_model(g)
        modules = [net.stem] + [b for st in net.stages for b in st] + ([] if isinstance(net.head, nn.Identity)
                                                                       else [net.head])
        for unit, ops, module in zip(expand(g).units, network_ops(expand(g)), modules, strict=True):
            ses = [m for m in module.modules() if isinstance(m, SqueezeExcitation)]
            in_se = {id(m) for s in ses for m in s.modules()}
            convs = [m for m in module.modules() if isinstance(m, nn.Conv2d) and id(m) not in in_se]
            acts = [m for m in module.modules() if isinstance(m, (nn.ReLU, nn.SiLU)) and id(m) not in in_se]
            pools = [m for m in module.modules() if isinstance(m, nn.AvgPool2d)]
            count = {kind: sum(1 for u in ops if u.op in kind and u.weight) for kind in
                     (("conv", "convsq", "dw"), ("act",), ("se",), ("pool",), ("add",))}
            assert count[("conv", "convsq", "dw")] == len(convs), unit
            assert count[("act",)] == len(acts) and count[("se",)] == len(ses), unit
            assert count[("pool",)] == len(pools) and count[("add",)] == int(unit.residual), unit
            timed_macs = sum(work(u.op, u.k, u.s, u.r, u.extra, u.c_a, u.c_b) for u in ops if u.op in ("conv", "convsq"))
            dense = sum(m.in_channels * m.out_channels * m.kernel_size[0] ** 2 for m in convs if m.groups == 1)
            assert timed_macs >= dense  # work = MACs + an output-size term
