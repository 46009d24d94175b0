"""Multi-budget Pareto runs: one DeepMAD search per budget in worker processes, an NSGA-II front, a picture.

Budget points. Each point is a MAC budget plus a params budget — or, in a latency run
(``pareto --latency 20ms 50ms --latency-table TABLE``), a latency budget alone, the latency predicted
by the table's model; the x-axis of the front, the picture and the hypervolume is then latency.
A MAC point's params budget is given per point, or — by default —
scaled with MACs by the config's ratio ``budget.params / budget.macs`` (29 M / 4.5 G for mb-29m,
so 15.4 G gets 99.2 M); a config with a params budget but no MAC budget keeps its params budget
constant; one with neither has no params budget. ρ0, max layers and the monotone-channel switch
come from the config and are the same at every point.

Determinism. The search of a point uses the run seed and the standalone search's settings, so it
returns what ``run.py search`` with that budget and seed returns; the sweep is seeded from the run
seed and its range (``budget_seed``); nothing depends on a worker index or the order of
completion, so ``jobs`` changes the wall time only. Workers run in
``deepmad_evo.parallel``'s pool; ``jobs = 1`` runs in-process.

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

Modules: ``budgets`` (points, seeds, one search per point), ``sweep`` (NSGA-II and hypervolume),
``references`` (published structures), ``workers`` (the process pool), ``run`` (the run directory
and ``pareto.json``), ``plot`` (the picture).
"""

from __future__ import annotations

from .budgets import (RECORD_FORMAT, BudgetPoint, Sweep, budget_points, budget_seed, check_budget, latency_label,
                      latency_points, monotone_points, point_budget, quantity_label, scaled_params, search_settings,
                      solve_budget)
from .plot import plot_pareto
from .references import PUBLISHED_DIR, reference_points
from .run import RUN_FORMAT, assemble, run_pareto
from .sweep import SWEEP_FORMAT, SWEEP_LABEL, FrontProblem, front_best, hypervolume, solve_sweep

__all__ = ["PUBLISHED_DIR", "RECORD_FORMAT", "RUN_FORMAT", "SWEEP_FORMAT", "SWEEP_LABEL", "BudgetPoint",
           "FrontProblem", "Sweep", "assemble", "budget_points", "budget_seed", "check_budget", "front_best", "hypervolume",
           "latency_label", "latency_points",
           "monotone_points", "plot_pareto", "point_budget", "quantity_label", "reference_points", "run_pareto",
           "scaled_params", "search_settings", "solve_budget", "solve_sweep"]
