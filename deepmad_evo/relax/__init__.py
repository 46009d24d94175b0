"""Continuous relaxation of the DeepMAD problem, solved by SLSQP with exact gradients, to cross-check the GA.

The relaxed problem keeps the template and the per-stage kernels of a discrete solution and lets
widths and depths be real. Its variables are

====== =============================================================
z      [ln c_stem, ln c_1..c_S, ln btn_1..btn_S, d_1..d_S] (n = 1 + 3·S)
c_i    stage output channels; monotone channels are linear in ln c
btn_i  bottleneck widths, e_min·c − slack_lo ≤ btn ≤ e_max·c + slack_hi: the hull of the
       space's (c, btn) pairs, btn rounding to the channel multiple included
d_i    real depths in the space's [min, max]; a stage of depth d is its first block plus
       d − 1 repeats, so every sum over blocks is linear in d
σ_ε    √(var(d) + ε²) − ε, the smoothed population std of the depths (σ − ε ≤ σ_ε ≤ σ)
====== =============================================================

Objective and constraints are computed by the discrete code path itself:
``objective.evaluate_population`` runs on ``Dual`` arrays (forward-mode dual numbers), so the
entropy, every prefix ρ_j, the MACs, params and layers come with exact gradients. Three spots are
relaxed on purpose, each so that every discrete feasible genotype stays feasible with an
objective no lower than its own (the relaxed optimum is an *upper bound* for the fixed kernels,
up to the caveat that SLSQP is a local solver):

- the SE squeeze width (a rint/floor staircase of btn) is replaced by a C¹ lower bound that
  equals the staircase's affine lower envelope btn/4 − δ (δ = 6 for multiples of 8) for large
  btn and its floor (8) for small btn; relaxed SE costs are therefore ≤ the discrete ones by at
  most δ squeeze channels per block. (An interpolation exact at every admissible btn, C¹ steps
  in between, tightens the presets' bounds by only 0.02–0.09 % but makes the relaxation
  multimodal: SLSQP starts then disagree by up to 0.5 %. The affine bound keeps them agreeing.)
- the average-pooled identity residual of a stride-2 mbconv block with c_in = out (tinynas
  MACs c_in·r², a measure-zero event for real widths) is dropped: relaxed MACs ≤ discrete;
- the depth std is smoothed to σ_ε ≤ σ, so the relaxed penalty β·exp(σ_ε) ≤ β·exp(σ)
  (it differs by at most β·exp(σ)·ε).

The optimum found by SLSQP (multi-start: the GA's point and random feasible points) is rounded
back to the space (every floor/ceil choice of the most fractional variables, a violation
descent when none is feasible) and polished by the GA's integer local search. The gap
(relaxed − GA)/relaxed is split by one more solve with the depths held at the GA's integers:
what real-valued depths buy versus what better widths could buy. Optionally a branch and bound
over the depths (``depth_branch_and_bound``) bounds the problem with integral depths.

Modules: ``dual`` (forward-mode dual numbers), ``relaxation`` (the relaxed problem and SLSQP),
``rounding`` (back to the grid: round, repair, polish), ``depth_bound`` (branch and bound over the
depths, and the greedy dive), ``lockstep`` (many SLSQP runs side by side, their evaluations
batched), ``step`` (the relaxation as a stage of the search), ``crosscheck`` (the
GA-versus-relaxation report).
"""

from __future__ import annotations

from .crosscheck import BOUND_GAP, GAP_TOLERANCE, CrossCheck, StartReport, cross_check
from .depth_bound import depth_branch_and_bound, depth_dive
from .dual import Dual
from .relaxation import (DEPTH_EPSILON, FEASIBILITY_TOLERANCE, RelaxedValues, Relaxation, SqueezeBound,
                         admissible_btn, smooth_relu, smoothed_std)
from .rounding import round_and_repair
from .step import relaxation_step

__all__ = ["BOUND_GAP", "DEPTH_EPSILON", "FEASIBILITY_TOLERANCE", "GAP_TOLERANCE", "CrossCheck", "Dual", "RelaxedValues", "Relaxation",
           "SqueezeBound", "StartReport", "admissible_btn", "cross_check", "depth_branch_and_bound", "depth_dive",
           "relaxation_step", "round_and_repair",
           "smooth_relu", "smoothed_std"]
