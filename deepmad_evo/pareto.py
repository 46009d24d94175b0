"""Multi-budget Pareto runs: one DeepMAD search per budget in worker processes, an NSGA-II front, a picture.

Budget points. Each point is a MAC budget plus a params budget: given per point, or — by default —
scaled with MACs by the config's ratio ``budget.params / budget.macs`` (29 M / 4.5 G for mb-29m,
so 15.4 G gets 99.2 M); a config with a params budget but no MAC budget keeps its params budget
constant; one with neither has no params budget. ρ0, max layers and the monotone-channel switch
come from the config and are the same at every point.

Determinism. The search of a point uses the run seed and the standalone search's settings, so it
returns what ``run.py search`` with that budget and seed returns; the sweep is seeded from the run
seed and its range (``budget_seed``); nothing depends on a worker index or the order of
completion, so ``jobs`` changes the wall time only. Workers run in a ``forkserver`` (or ``spawn``) context; ``jobs = 1`` runs in-process.

Monotonicity. Independent searches can end with a larger budget scoring lower than a smaller one
(the larger space is harder to search). Each point therefore reports the best of *all* searched
results that are feasible under its own budget (``monotone_points``): order-independent,
deterministic, and a larger budget (MACs and params both ≥) never scores lower. A point taken
from another budget's search has ``source`` set to that budget's label.

Sweep. ``--sweep MIN MAX`` runs NSGA-II over (−objective, MACs/MAX[, params/P]) — params only when
the run has params budgets, P = the params budget at MAX — with ρ ≤ ρ0, monotone channels,
MACs ≤ MAX, params ≤ P and MACs ≥ MIN as constraints, started from feasible samples at budget
levels spread geometrically over [MIN, MAX]. An external archive keeps every feasible
non-dominated point evaluated in any generation; that archive is the front.

Hypervolume (``pymoo.indicators.hv``) is computed on (−objective, MACs/M[, params/P]) with the
reference point (0, 1[, 1]): M is the largest MAC budget of the run (sweep MAX included) and P the
largest params budget. In two dimensions it equals ∫₀¹ best_objective(m·M) dm, the mean over
[0, M] of the best objective reachable within a MAC budget — in objective units, comparable
between the per-budget points and the sweep front of one run.

Run directory (every file written atomically): ``budget-<label>.json`` (one resume record per
budget, written the moment its search finishes), ``sweep.json`` (the sweep's record),
``genotype-<label>.json`` (the chosen genotype per budget), ``pareto.json`` (everything) and
``pareto.png``. A restarted run reuses every record whose config, seed and budget match, and
refuses a directory holding a different run's record for the same budget.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from queue import Empty
from typing import Callable, Sequence

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.indicators.hv import HV
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from .config import Config
from .genotype import Genotype, GenotypeError, atomic_write_bytes, atomic_write_text, load_genotype, save_genotype
from .objective import evaluate
from .problem import Budget, DeepMADProblem, MonotoneRepair
from .search import InfeasibleBudgetError, SearchSettings, feasible_samples, run_search, smallest_network
from .space import SearchSpace

Callback = Callable[[dict], None]

PUBLISHED_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "published"
RECORD_FORMAT = "deepmad-evo/pareto-budget/1"
SWEEP_FORMAT = "deepmad-evo/pareto-sweep/1"
RUN_FORMAT = "deepmad-evo/pareto/1"
SWEEP_LABEL = "sweep"
# Budget levels the sweep's initial population is spread over.
SWEEP_LEVELS = 8


@dataclass(frozen=True)
class BudgetPoint:
    """One point of a Pareto run: a MAC budget and its params budget (``None``: no params budget)."""

    macs: float
    params: float | None = None

    @property
    def label(self) -> str:
        return quantity_label(self.macs)


@dataclass(frozen=True)
class Sweep:
    """The MAC range of an NSGA-II sweep and its params budget (``None``: params not an objective)."""

    macs_min: float
    macs_max: float
    params_max: float | None = None


def quantity_label(value: float) -> str:
    """Short exact label of a quantity: 4.5e9 → ``4.5G``, 0.4e9 → ``0.4G``, 2e7 → ``20M``.

    The unit is the largest one the value reaches a tenth of; the number is the shortest decimal
    that reads back as the same float, so distinct budgets get distinct labels.
    """
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= 0.1 * scale:
            return np.format_float_positional(value / scale, trim="-") + unit
    return np.format_float_positional(value, trim="-")


def budget_points(cfg: Config, macs: Sequence[float], params: Sequence[float] | str | None = None) -> tuple[BudgetPoint, ...]:
    """The run's budget points, sorted by MACs.

    Args:
        cfg: the run configuration (its budget gives ρ0 and the params/MACs ratio).
        macs: MAC budgets.
        params: one params budget per MAC budget, ``"off"`` for none, or ``None`` to scale the
            config's params budget with MACs (see the module docstring).

    Returns:
        The points, ascending in MACs.

    Raises:
        ValueError: for duplicate budgets or a params list of the wrong length.
    """
    macs = [float(m) for m in macs]
    if isinstance(params, str):
        if params != "off":
            raise ValueError(f"--params: expected one value per --budget or 'off', got {params!r}")
        pairs = [(m, None) for m in macs]
    elif params is None:
        pairs = [(m, scaled_params(cfg, m)) for m in macs]
    else:
        if len(params) != len(macs):
            raise ValueError(f"--params: expected {len(macs)} values (one per --budget) or 'off', got {len(params)}")
        pairs = [(m, float(p)) for m, p in zip(macs, params)]
    points = tuple(BudgetPoint(m, p) for m, p in sorted(pairs, key=lambda mp_: mp_[0]))
    labels = [p.label for p in points]
    for a, b in zip(labels, labels[1:]):
        if a == b:
            raise ValueError(f"--budget: {a} is given twice; expected distinct MAC budgets")
    return points


def scaled_params(cfg: Config, macs: float) -> float | None:
    """The params budget that goes with a MAC budget by the config's params/MACs ratio."""
    b = cfg.budget
    if b.params is None:
        return None
    if b.macs is None:
        return float(b.params)
    return float(b.params) * macs / float(b.macs)


def budget_seed(seed: int, point: BudgetPoint | Sweep | str) -> int:
    """Seed of one point's search, derived from the run seed and the budget values only."""
    if isinstance(point, BudgetPoint):
        key = f"{point.macs!r}|{point.params!r}"
    elif isinstance(point, Sweep):
        key = f"sweep|{point.macs_min!r}|{point.macs_max!r}|{point.params_max!r}"
    else:
        key = str(point)
    digest = hashlib.sha256(f"deepmad-evo/pareto|{seed}|{key}".encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def search_settings(cfg: Config) -> SearchSettings:
    """The per-budget search effort of a config: the standalone search's, so both give one answer.

    A Pareto point and ``run.py search`` with the same template, budgets, seed and settings
    return the same genotype. The parallelism of a Pareto run goes across budgets, so each
    search runs its chains in its own process (``jobs=1``; the result never depends on ``jobs``).
    """
    return cfg.search_settings(jobs=1)


def point_budget(cfg: Config, macs: float | None, params: float | None) -> Budget:
    b = cfg.budget
    return Budget(rho=b.rho, macs=macs, params=params, max_layers=b.max_layers, monotone=b.monotone)


def _number(v):
    """JSON number: an int when the value is integral (torch-convention costs), else a float."""
    v = float(v)
    return int(v) if v.is_integer() and abs(v) < 2**53 else v


def _record_point(genotype: Genotype, cfg: Config) -> dict:
    ev = evaluate(genotype, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
    return {"genotype": genotype.to_dict(), "text": genotype.to_text(), "objective": float(ev.objective),
            "macs": _number(ev.macs), "params": _number(ev.params), "rho": float(ev.rho), "layers": int(ev.layers)}


# ---------------------------------------------------------------- one search per budget

def check_budget(cfg: Config, space: SearchSpace, macs: float, params: float | None, field: str) -> None:
    """Fail fast, before any worker starts, when the smallest network of the space breaks a size budget."""
    problem = DeepMADProblem(space, point_budget(cfg, macs, params), cfg.objective.alpha, cfg.objective.beta,
                             cfg.objective.convention)
    ev, _ = problem.evaluate_vectors(smallest_network(space)[None])
    small_macs, small_params = float(ev.macs[0]), float(ev.params[0])
    if small_macs > macs or (params is not None and small_params > params):
        raise InfeasibleBudgetError(
            f"{field}: {quantity_label(macs)} MACs"
            + ("" if params is None else f" / {quantity_label(params)} params")
            + f" is infeasible; the smallest network of {cfg.name} has {quantity_label(small_macs)} MACs and "
            f"{quantity_label(small_params)} params ({cfg.objective.convention} convention)"
        )


def _search_fraction(info: dict, local_search: bool) -> float | None:
    """Approximate completed fraction of one search from its progress dict (GA ≈ 85 % of the work)."""
    step, total = info.get("step"), info.get("total")
    if step is None or not total:
        return None
    done = min(1.0, (step + 1) / total)
    if info.get("phase") == "ga":
        return 0.85 * done if local_search else done
    if info.get("phase") == "polish":
        return 0.85 + 0.15 * done
    return None


def solve_budget(cfg: Config, point: BudgetPoint, seed: int, path: Path | None, report: Callback | None = None) -> dict:
    """Search one budget point and write its resume record.

    Args:
        cfg: the run configuration.
        point: the budget point.
        seed: the run seed, which is also the search's seed: the point is what the standalone
            search with this budget and seed returns.
        path: where the record goes (atomically); ``None`` writes nothing.
        report: called with ``{"event": "progress", "label", "fraction", "best_objective"}``.

    Returns:
        The record (JSON-ready dict).
    """
    settings = search_settings(cfg)
    label = point.label
    last = [-1.0]

    def callback(info):
        f = _search_fraction(info, settings.local_search)
        if report is None or f is None or f < last[0] + 0.01:
            return
        last[0] = f
        report({"event": "progress", "label": label, "fraction": f, "best_objective": info.get("best_objective")})

    search_seed = seed
    cpu0 = time.process_time()
    try:
        result = run_search(cfg.search_space(), point_budget(cfg, point.macs, point.params),
                            alpha=cfg.objective.alpha, beta=cfg.objective.beta, convention=cfg.objective.convention,
                            settings=settings, seed=search_seed, callback=callback)
    except InfeasibleBudgetError as exc:
        raise InfeasibleBudgetError(f"--budget {label}: {exc}") from None
    record = {"format": RECORD_FORMAT, "config": cfg.to_dict(), "seed": seed, "search_seed": search_seed,
              "budget": {"label": label, "macs": point.macs, "params": point.params, "rho": cfg.budget.rho},
              **_record_point(result.genotype, cfg), "feasible": bool(result.feasible),
              "evaluations": int(result.n_evals), "seconds": float(result.seconds),
              "cpu_seconds": time.process_time() - cpu0}
    if path is not None:
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return record


def monotone_points(points: Sequence[BudgetPoint], records: Sequence[dict]) -> list[tuple[dict, str]]:
    """For each point, the best searched result feasible under its budget, and the label of its search.

    A point keeps its own search's result unless another point's result fits its budget (MACs and
    params; ρ0 and monotonicity are shared) with a strictly higher objective.

    Args:
        points: the budget points.
        records: their search records, in the same order.

    Returns:
        ``[(record, source_label)]`` in the order of ``points``.
    """
    chosen = []
    for i, p in enumerate(points):
        best, source = records[i], p.label
        for q, r in zip(points, records):
            fits = r["feasible"] and r["macs"] <= p.macs and (p.params is None or r["params"] <= p.params)
            if fits and r["objective"] > best["objective"]:
                best, source = r, q.label
        chosen.append((best, source))
    return chosen


# ---------------------------------------------------------------- NSGA-II sweep

class FrontProblem(Problem):
    """(−objective, MACs[, params]) of a search space under ρ, monotone channels and a MAC range.

    F = (−objective, MACs / MAX[, params / P]); G = the ``DeepMADProblem`` constraints at
    (MAX, P) plus 1 − MACs / MIN. ``space`` and ``budget`` are exposed for ``MonotoneRepair``;
    ``archive`` = (X, F) of the feasible non-dominated points evaluated so far.
    """

    def __init__(self, space: SearchSpace, budget: Budget, macs_min: float, alpha=None, beta: float = 10.0,
                 convention: str = "torch") -> None:
        if budget.macs is None:
            raise ValueError("budget.macs: a sweep needs a MAC budget")
        self.inner = DeepMADProblem(space, budget, alpha, beta, convention)
        self.space, self.budget, self.macs_min = space, budget, float(macs_min)
        xl, xu = space.bounds
        n_obj = 2 if budget.params is None else 3
        super().__init__(n_var=space.n_var, n_obj=n_obj, n_ieq_constr=len(budget.names) + 1, xl=xl, xu=xu, vtype=int)
        self.archive = (np.zeros((0, space.n_var), dtype=np.int64), np.zeros((0, n_obj)))

    def evaluate_vectors(self, X: np.ndarray):
        """Evaluate integer vectors; returns (PopulationEvaluation, F, G)."""
        ev, G = self.inner.evaluate_vectors(np.asarray(X))
        cols = [-ev.objective, ev.macs / self.budget.macs]
        if self.budget.params is not None:
            cols.append(ev.params / self.budget.params)
        F = np.column_stack(cols).astype(float)
        return ev, F, np.column_stack([G, 1.0 - ev.macs / self.macs_min])

    def _evaluate(self, X, out, *args, **kwargs):
        X = np.round(np.asarray(X)).astype(np.int64)
        _, F, G = self.evaluate_vectors(X)
        out["F"], out["G"] = F, G
        # Every evaluated point passes here, so the archive misses nothing NSGA-II's survival drops.
        ok = np.maximum(G, 0.0).sum(axis=1) <= 0
        self.archive = _non_dominated(np.concatenate([self.archive[0], X[ok]]),
                                      np.concatenate([self.archive[1], F[ok]]))


def _non_dominated(X: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct non-dominated rows, in a canonical order (by F, then X) so the archive is deterministic."""
    if len(X) == 0:
        return X, F
    _, keep = np.unique(F, axis=0, return_index=True)
    X, F = X[np.sort(keep)], F[np.sort(keep)]
    front = NonDominatedSorting().do(F, only_non_dominated_front=True)
    X, F = X[front], F[front]
    order = np.lexsort(tuple(X.T[::-1]) + tuple(F.T[::-1]))
    return X[order], F[order]


def solve_sweep(cfg: Config, sweep: Sweep, seed: int, path: Path | None, report: Callback | None = None) -> dict:
    """NSGA-II over a MAC range; writes and returns the sweep record (front sorted by MACs).

    Effort: population 2 × ``search.pop_size``, ``search.generations × search.restarts`` generations.

    Args:
        cfg: the run configuration.
        sweep: MAC range and params budget.
        seed: the run seed (the sweep's own seed is ``budget_seed(seed, sweep)``).
        path: where the record goes (atomically); ``None`` writes nothing.
        report: called with ``{"event": "progress", "label": "sweep", "fraction", "best_objective"}``.

    Returns:
        The record (JSON-ready dict).
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    space = cfg.search_space()
    o = cfg.objective
    budget = point_budget(cfg, sweep.macs_max, sweep.params_max)
    problem = FrontProblem(space, budget, sweep.macs_min, o.alpha, o.beta, o.convention)
    search_seed = budget_seed(seed, sweep)
    rng = np.random.default_rng(search_seed)
    pop_size = 2 * cfg.search.pop_size
    n_gen = cfg.search.generations * cfg.search.restarts

    # Spread the start over the range: feasible samples hug their budget, so one level per slice.
    levels = np.geomspace(sweep.macs_min, sweep.macs_max, SWEEP_LEVELS)
    per_level = -(-pop_size // SWEEP_LEVELS)
    starts = []
    for m in levels:
        params = None if sweep.params_max is None else sweep.params_max * m / sweep.macs_max
        level = DeepMADProblem(space, point_budget(cfg, m, params), o.alpha, o.beta, o.convention)
        starts.append(feasible_samples(level, per_level, rng))
    X0 = np.concatenate(starts)[:pop_size]  # already channel-monotone where the budget asks for it

    algorithm = NSGA2(
        pop_size=pop_size,
        sampling=Population.new(X=X0),
        crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=20, vtype=float, repair=RoundingRepair()),
        repair=MonotoneRepair(),
        eliminate_duplicates=True,
    )
    algorithm.setup(problem, termination=("n_gen", n_gen), seed=int(rng.integers(2**31 - 1)), verbose=False)
    gen = 0
    while algorithm.has_next():
        algorithm.next()
        gen += 1
        if report is not None and (gen == n_gen or gen % max(1, n_gen // 100) == 0):
            F = problem.archive[1]
            best = float(-F[:, 0].min()) if len(F) else None
            report({"event": "progress", "label": SWEEP_LABEL, "fraction": gen / n_gen, "best_objective": best})

    arch_X = problem.archive[0]
    n_evals = problem.inner.n_evals
    front = []
    if len(arch_X):
        ev, _, _ = problem.evaluate_vectors(arch_X)
        order = np.lexsort((-ev.objective, ev.macs))
        for i in order:
            front.append({"text": space.genotype(arch_X[i]).to_text(), "objective": float(ev.objective[i]),
                          "macs": _number(ev.macs[i]), "params": _number(ev.params[i]), "rho": float(ev.rho[i]),
                          "layers": int(ev.layers[i])})
    record = {"format": SWEEP_FORMAT, "config": cfg.to_dict(), "seed": seed, "search_seed": search_seed,
              "sweep": {"macs_min": sweep.macs_min, "macs_max": sweep.macs_max, "params_max": sweep.params_max},
              "pop_size": pop_size, "generations": n_gen, "evaluations": n_evals,
              "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu0, "front": front}
    if path is not None:
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return record


def front_best(front: Sequence[dict], macs: float, params: float | None = None) -> dict | None:
    """The front point with the highest objective within a budget (``None`` if none fits)."""
    fits = [p for p in front if p["macs"] <= macs and (params is None or p["params"] <= params)]
    return max(fits, key=lambda p: p["objective"]) if fits else None


def hypervolume(objective, macs, params=None, *, macs_ref: float, params_ref: float | None = None) -> float:
    """Hypervolume of (−objective, MACs/macs_ref[, params/params_ref]) w.r.t. the point (0, 1[, 1]).

    Args:
        objective, macs, params: the points (params omitted for the two-objective form).
        macs_ref, params_ref: the normalising budgets (see the module docstring).

    Returns:
        The hypervolume, in objective units (0 for no points).
    """
    objective = np.asarray(objective, dtype=float)
    if objective.size == 0:
        return 0.0
    cols = [-objective, np.asarray(macs, dtype=float) / macs_ref]
    ref = [0.0, 1.0]
    if params is not None:
        cols.append(np.asarray(params, dtype=float) / params_ref)
        ref.append(1.0)
    return float(HV(ref_point=np.array(ref))(np.column_stack(cols)))


# ---------------------------------------------------------------- published references

def reference_points(cfg: Config, folder: str | os.PathLike | None = PUBLISHED_DIR) -> tuple[list[dict], list[dict]]:
    """Published structures that fit the config's template, evaluated under its objective.

    A structure fits when its blocks, strides, head, stem stride and image size equal the
    template's (otherwise its objective is not comparable). A missing folder gives no points.

    Args:
        cfg: the run configuration.
        folder: the folder of structure files (TinyNAS literals, genotype JSON or text form).

    Returns:
        (fitting points ``{name, text, objective, macs, params, rho, layers}``, skipped ``{name, reason}``).
    """
    if folder is None or not Path(folder).is_dir():
        return [], []
    t = cfg.template
    points, skipped = [], []
    for path in sorted(Path(folder).iterdir()):
        if path.suffix not in (".txt", ".json") or not path.is_file():
            continue
        try:
            g = load_genotype(path)
        except (GenotypeError, ValueError, OSError) as exc:
            skipped.append({"name": path.stem, "reason": f"unreadable ({str(exc).splitlines()[0]})"})
            continue
        mine = (t.blocks, t.strides, t.head, t.stem_stride, t.image_size)
        theirs = (g.blocks, tuple(st.s for st in g.stages), None if g.head is None else g.head.out, g.stem.s,
                  g.image_size)
        if mine != theirs:
            names = ("blocks", "strides", "head", "stem stride", "image size")
            diff = [f"{n} {_short(b)} ≠ {_short(a)}" for n, a, b in zip(names, mine, theirs) if a != b]
            skipped.append({"name": path.stem, "reason": "does not fit the template: " + "; ".join(diff)})
            continue
        points.append({"name": path.stem, **_record_point(g, cfg)})
    return points, skipped


def _short(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)


# ---------------------------------------------------------------- worker processes

_QUEUE = None


def _watch_parent(parent) -> None:
    # A killed run must not leave workers behind. The parent's sentinel fires when it dies; the
    # parent pid cannot tell (a forkserver worker's parent is the server, which outlives the run).
    parent.join()
    os._exit(1)


def _init_worker(queue) -> None:
    global _QUEUE
    _QUEUE = queue
    queue.cancel_join_thread()  # progress messages are disposable; never block a worker's exit on them
    # Ctrl-C is the parent's to handle: it tears the pool down and finished budgets are on disk.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = mp.parent_process()
    if parent is not None:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _run_task(task: tuple) -> dict:
    kind, cfg, what, seed, path = task
    solve = solve_budget if kind == "budget" else solve_sweep
    return solve(cfg, what, seed, path, _QUEUE.put)


def _context():
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # Workers fork from a server that has the math core imported already.
        ctx.set_forkserver_preload(["deepmad_evo.pareto"])
        return ctx
    return mp.get_context("spawn")


def _run_tasks(tasks: list[tuple], jobs: int, report: Callback) -> dict:
    """Run (kind, cfg, point, seed, path) tasks; returns {label: record}. Sweep first (the longest)."""
    results = {}

    def done(task, record):
        label = SWEEP_LABEL if task[0] == "sweep" else task[2].label
        results[label] = record
        report({"event": "done", "label": label, "record": record, "reused": False})

    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            kind, cfg, what, seed, path = task
            done(task, (solve_budget if kind == "budget" else solve_sweep)(cfg, what, seed, path, report))
        return results

    ctx = _context()
    queue = ctx.Queue()
    executor = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx, initializer=_init_worker,
                                   initargs=(queue,))

    def drain():
        while True:
            try:
                report(queue.get_nowait())
            except Empty:
                return

    try:
        futures = {executor.submit(_run_task, t): i for i, t in enumerate(tasks)}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            drain()
            for f in sorted(finished, key=futures.get):
                done(tasks[futures[f]], f.result())
    except BaseException:
        # Interrupted or failed: stop the other searches now; finished budgets are already on disk.
        for p in list((getattr(executor, "_processes", None) or {}).values()):
            p.terminate()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        queue.close()
    return results


# ---------------------------------------------------------------- the whole run

def _load_record(path: Path, expect: dict, what: str, out: Path) -> dict | None:
    """A matching finished record, ``None`` when absent; a mismatch is a one-line error naming the first
    differing key of ``expect`` (ordered most telling first: format, seed, budget, config)."""
    if not path.is_file():
        return None
    hint = f"use a new --out (or delete {path})"
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise ValueError(f"--out: {path} is not a readable pareto record; {hint}") from None
    if not isinstance(record, dict):
        raise ValueError(f"--out: {path} is not a pareto record; {hint}")
    for key, value in expect.items():
        if record.get(key) != value:
            raise ValueError(f"--out: {out} holds {what} of a different run ({key} differs); {hint}")
    return record


def _jsonable(v):
    return json.loads(json.dumps(v))


def run_pareto(cfg: Config, points: Sequence[BudgetPoint], *, out: str | os.PathLike, jobs: int | None = None,
               sweep: Sweep | None = None, callback: Callback | None = None,
               published: str | os.PathLike | None = PUBLISHED_DIR) -> dict:
    """Search every budget point (and the sweep), assemble the family, write the run directory.

    Args:
        cfg: the run configuration (template, space, ρ0, objective, search effort, seed).
        points: budget points (``budget_points``).
        out: the run directory; finished budgets found there are reused.
        jobs: worker processes (default: the usable cores); 1 runs in-process. Workers start by
            forkserver/spawn, so a script calling this with jobs > 1 needs the usual
            ``if __name__ == "__main__":`` guard.
        sweep: optional NSGA-II sweep.
        callback: progress events — ``{"event": "start", "labels", "reused"}``, ``{"event":
            "progress", "label", "fraction", "best_objective"}``, ``{"event": "done", "label",
            "record", "reused"}``.
        published: folder of published structures to compare with (skipped when absent).

    Returns:
        The content of ``pareto.json``.

    Raises:
        ValueError: for infeasible budgets or a run directory holding another run.
    """
    t0 = time.perf_counter()
    report = callback or (lambda event: None)
    out = Path(out)
    points = tuple(points)
    if not points and sweep is None:
        raise ValueError("--budget: expected at least one MAC budget (e.g. --budget 0.4G 4.5G) or --sweep MIN MAX")
    if jobs is None:
        jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if jobs < 1:
        raise ValueError(f"--jobs: expected an integer >= 1, got {jobs}")
    space = cfg.search_space()
    for p in points:
        check_budget(cfg, space, p.macs, p.params, "--budget")
    if sweep is not None:
        if not 0 < sweep.macs_min < sweep.macs_max:
            raise ValueError(f"--sweep: expected 0 < MIN < MAX, got {quantity_label(sweep.macs_min)} "
                             f"{quantity_label(sweep.macs_max)}")
        check_budget(cfg, space, sweep.macs_max, sweep.params_max, "--sweep MAX")

    seed = cfg.search.seed
    config = _jsonable(cfg.to_dict())
    records, tasks, reused = {}, [], []
    if sweep is not None:
        path = out / "sweep.json"
        expect = {"format": SWEEP_FORMAT, "seed": seed,
                  "sweep": _jsonable({"macs_min": sweep.macs_min, "macs_max": sweep.macs_max,
                                      "params_max": sweep.params_max}), "config": config}
        record = _load_record(path, expect, "a sweep", out)
        if record is None:
            tasks.append(("sweep", cfg, sweep, seed, path))
        else:
            records[SWEEP_LABEL] = record
            reused.append(SWEEP_LABEL)
    for p in points:
        path = out / f"budget-{p.label}.json"
        expect = {"format": RECORD_FORMAT, "seed": seed,
                  "budget": _jsonable({"label": p.label, "macs": p.macs, "params": p.params, "rho": cfg.budget.rho}),
                  "config": config}
        record = _load_record(path, expect, f"budget {p.label}", out)
        if record is None:
            tasks.append(("budget", cfg, p, seed, path))
        else:
            records[p.label] = record
            reused.append(p.label)

    labels = ([SWEEP_LABEL] if sweep is not None else []) + [p.label for p in points]
    report({"event": "start", "labels": labels, "reused": reused})
    for label in reused:
        report({"event": "done", "label": label, "record": records[label], "reused": True})
    out.mkdir(parents=True, exist_ok=True)
    records.update(_run_tasks(tasks, jobs, report))
    return assemble(cfg, points, records, out=out, sweep=sweep, reused=reused, published=published,
                    seconds=time.perf_counter() - t0)


def assemble(cfg: Config, points: Sequence[BudgetPoint], records: dict, *, out: Path, sweep: Sweep | None,
             reused: Sequence[str] = (), published=PUBLISHED_DIR, seconds: float | None = None) -> dict:
    """Build ``pareto.json`` from the records, write it, the per-budget genotypes and the picture."""
    chosen = monotone_points(points, [records[p.label] for p in points])
    rows = []
    for p, (rec, source) in zip(points, chosen):
        own = records[p.label]
        row = {"label": p.label, "budget": {"macs": p.macs, "params": p.params, "rho": cfg.budget.rho},
               **{k: rec[k] for k in ("genotype", "text", "objective", "macs", "params", "rho", "layers", "feasible")},
               "source": source, "search_objective": own["objective"], "search_seed": own["search_seed"],
               "evaluations": own["evaluations"], "seconds": own["seconds"], "cpu_seconds": own.get("cpu_seconds"),
               "reused": p.label in reused}
        rows.append(row)
        save_genotype(Genotype.from_dict(rec["genotype"]), out / f"genotype-{p.label}.json")

    params_on = any(p.params is not None for p in points) or (sweep is not None and sweep.params_max is not None)
    macs_ref = max([p.macs for p in points] + ([sweep.macs_max] if sweep else []))
    params_ref = None
    if params_on:
        params_ref = max([p.params for p in points if p.params is not None]
                         + ([sweep.params_max] if sweep and sweep.params_max is not None else []))

    def hv(items):
        return hypervolume([r["objective"] for r in items], [r["macs"] for r in items],
                           [r["params"] for r in items] if params_on else None, macs_ref=macs_ref, params_ref=params_ref)

    hyper = {"points": hv([r for r in rows if r["feasible"]]), "reference": {"objective": 0.0, "macs": macs_ref, "params": params_ref},
             "objectives": ["-objective", "macs/reference.macs"] + (["params/reference.params"] if params_on else [])}
    sweep_out = None
    if sweep is not None:
        srec = records[SWEEP_LABEL]
        front = srec["front"]
        hyper["front"] = hv(front)
        comparison = []
        for p, row in zip(points, rows):
            best = front_best(front, p.macs, p.params)
            comparison.append({"label": p.label, "objective": row["objective"],
                               "front_best": None if best is None else best["objective"],
                               "margin": None if best is None else row["objective"] - best["objective"]})
        sweep_out = {"macs_min": sweep.macs_min, "macs_max": sweep.macs_max, "params_max": sweep.params_max,
                     "front": front, "comparison": comparison, "search_seed": srec["search_seed"],
                     "pop_size": srec["pop_size"], "generations": srec["generations"],
                     "evaluations": srec["evaluations"], "seconds": srec["seconds"],
                     "cpu_seconds": srec.get("cpu_seconds"), "reused": SWEEP_LABEL in reused}
    refs, skipped = reference_points(cfg, published)
    run = {"format": RUN_FORMAT, "config": cfg.to_dict(), "seed": cfg.search.seed,
           "convention": cfg.objective.convention, "points": rows, "sweep": sweep_out, "hypervolume": hyper,
           "references": refs, "references_skipped": skipped,
           "carried": sum(r["source"] != r["label"] for r in rows), "wall_seconds": seconds}
    atomic_write_text(out / "pareto.json", json.dumps(run, indent=1) + "\n")
    plot_pareto(run, out / "pareto.png")
    return run


# ---------------------------------------------------------------- picture

def plot_pareto(run: dict, path: str | os.PathLike) -> None:
    """Draw objective vs MACs (log axis) — per-budget optima, the sweep front, published points — to a PNG.

    Args:
        run: a ``pareto.json`` dict.
        path: the PNG to write (atomically).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(8, 5.2), dpi=120)
    FigureCanvasAgg(fig)  # the Agg canvas: no display, no global pyplot state
    ax = fig.add_subplot()
    sweep = run.get("sweep")
    if sweep and sweep["front"]:
        front = sorted(sweep["front"], key=lambda p: p["macs"])
        label = f"NSGA-II front ({len(front)} points)"
        xy = ([p["macs"] for p in front], [p["objective"] for p in front])
        if sweep.get("params_max") is not None:
            # Three objectives: colour carries the params axis of the front.
            dots = ax.scatter(*xy, s=9, c=[p["params"] for p in front], cmap="viridis", alpha=0.6, label=label,
                              zorder=2)
            bar = fig.colorbar(dots, ax=ax, pad=0.01)
            bar.set_label("front params")
            bar.formatter = FuncFormatter(lambda v, _: quantity_label(v) if v > 0 else "0")
            bar.update_ticks()
        else:
            ax.scatter(*xy, s=9, color="0.6", alpha=0.7, label=label, zorder=2)
        ax.axvspan(sweep["macs_min"], sweep["macs_max"], color="0.5", alpha=0.06, zorder=0)
    rows = run["points"]
    for r in rows:
        ax.axvline(r["budget"]["macs"], color="tab:blue", lw=0.6, ls=":", alpha=0.6, zorder=1)
    if rows:
        # A staircase: the best objective reachable within a budget only changes at the budgets.
        ax.plot([r["macs"] for r in rows], [r["objective"] for r in rows], drawstyle="steps-post", color="tab:blue",
                lw=1, alpha=0.5, zorder=3)
        ax.plot([r["macs"] for r in rows], [r["objective"] for r in rows], "o", color="tab:blue", ms=7, mec="white",
                label="per-budget optimum", zorder=5)
        for r in rows:
            ax.annotate(r["label"], (r["macs"], r["objective"]), textcoords="offset points", xytext=(-7, 7),
                        ha="right", fontsize=8, color="tab:blue", zorder=6,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    for ref in run.get("references", []):
        ax.scatter([ref["macs"]], [ref["objective"]], marker="*", s=160, color="tab:red", zorder=4)
        ax.annotate(ref["name"], (ref["macs"], ref["objective"]), textcoords="offset points", xytext=(6, -10),
                    fontsize=8, color="tab:red", zorder=6,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    if run.get("references"):
        ax.scatter([], [], marker="*", s=160, color="tab:red", label="published")
    ax.set_xscale("log")
    ticks = sorted({r["budget"]["macs"] for r in rows} | ({sweep["macs_min"], sweep["macs_max"]} if sweep else set()))
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: quantity_label(v) if v > 0 else "0"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel(f"MACs ({run['convention']} convention)")
    ax.set_ylabel("DeepMAD objective (entropy − β·Q)")
    ax.set_title(f"{run['config']['name']}: best objective per MAC budget")
    hv = run["hypervolume"]
    text = f"hypervolume {hv['points']:.5g}" + (f" (front {hv['front']:.5g})" if "front" in hv else "")
    ax.text(0.99, 0.02, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="0.3")
    ax.grid(True, which="major", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def default_out(cfg: Config) -> Path:
    """``runs/pareto-<config>-s<seed>-<hash of the resolved config>``: the same command resumes the same run."""
    digest = hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in cfg.name)
    return Path("runs") / f"pareto-{name}-s{cfg.search.seed}-{digest}"


def with_search(cfg: Config, **changes) -> Config:
    """A copy of ``cfg`` with its search settings changed (e.g. a quick test run)."""
    return replace(cfg, search=replace(cfg.search, **changes))
