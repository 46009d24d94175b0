"""Declarative run configuration: TOML presets read into frozen dataclasses.

Each key is read here and nowhere else; unknown keys are errors naming the file and the key.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .costs import CONVENTIONS
from .genotype import BLOCKS, RESNET_BLOCKS
from .io import jsonable
from .limits import shown
from .objective import DEFAULT_BETA, check_alpha
from . import limits, schema
from .problem import Budget
from .resources import preset_dir
from .schema import ConfigError, boolean, choice, integer, number, read_toml, sequence, take
from .search import SearchSettings
from .space import SearchSpace, Template

CONFIG_DIR = preset_dir()
DEFAULT_PRESET = "mb-29m"

_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgGtT]?)\s*$")

# DESIGN.md §6 family defaults: expansion (min, max, step), kernels, ρ0. Every shipped preset states
# these keys itself; the table only fills a user's TOML that omits them and a --block that switches family.
FAMILY_DEFAULTS = {
    "resnet": {"expansion": (0.1, 1.0, 0.1), "kernels": (3, 5), "rho": 0.3},
    "mobile": {"expansion": (1.5, 6.0, 0.1), "kernels": (3, 5, 7), "rho": 0.5},
}


def parse_quantity(text: Any, field: str) -> float:
    """Parse ``4.5G``, ``29M``, ``300e6`` or a plain number into a float.

    Raises:
        ConfigError: naming ``field`` and the value when it is not a positive quantity.
    """
    if isinstance(text, bool):
        raise ConfigError(f"{field}: expected a positive number with an optional K/M/G/T suffix, got {shown(text)}")
    if isinstance(text, (int, float)):
        try:
            value = float(text)
        except OverflowError:
            value = float("inf")
    else:
        m = _QUANTITY.match(str(text)[:200])
        if not m or len(str(text)) > 200:
            raise ConfigError(
                f"{field}: expected a positive number with an optional K/M/G/T suffix (e.g. 4.5G), got {shown(text)}"
            )
        value = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{field}: expected a positive finite number, got {shown(text)}")
    return value


def family(block: str) -> str:
    return "resnet" if block in RESNET_BLOCKS else "mobile"


@dataclass(frozen=True)
class SpaceConfig:
    stem_channels: tuple[int, int, int] = (16, 64, 8)
    channels: tuple[int, int, int] = (8, 2048, 8)
    expansion: tuple[float, float, float] | None = None  # None: the family default
    kernels: tuple[int, ...] | None = None
    depth: tuple[int, int] = (1, 16)
    first_stage_max_depth: int | None = None
    multiple: int = 8


@dataclass(frozen=True)
class ObjectiveConfig:
    alpha: tuple[float, ...] | None = None
    beta: float = DEFAULT_BETA
    convention: str = "torch"


@dataclass(frozen=True)
class CrossCheckSettings:
    """The ``[crosscheck]`` table: effort and warning threshold of the GA-versus-relaxation check."""

    starts: int = 3  # random feasible SLSQP starts besides the GA's
    tolerance: float = 0.01  # a gap (relaxed − GA)/relaxed above this is a warning
    maxiter: int = 200  # SLSQP iterations per start
    polish_iterations: int = 100  # discrete polish after rounding
    polish_starts: int = 3  # distinct roundings polished


@dataclass(frozen=True)
class Config:
    """A whole run configuration: template, space, budget, objective and search settings."""

    name: str
    template: Template
    space: SpaceConfig
    budget: Budget
    objective: ObjectiveConfig
    search: SearchSettings
    crosscheck: CrossCheckSettings = CrossCheckSettings()

    def search_settings(self, **overrides) -> SearchSettings:
        """The search settings of this config (``overrides`` replace single fields, e.g. ``jobs=1``)."""
        return replace(self.search, **overrides)

    def search_space(self) -> SearchSpace:
        t, sp = self.template, self.space
        fam = {family(b) for b in t.blocks}
        if len(fam) > 1 and (sp.expansion is None or sp.kernels is None):
            raise ConfigError("space: a template mixing ResNet and MobileNet blocks needs explicit expansion and kernels")
        defaults = FAMILY_DEFAULTS[fam.pop()]
        lo, hi, step = sp.expansion or defaults["expansion"]
        n = _grid_size("space.expansion", lo, hi, step, 1e-9, limits.MAX_EXPANSION)
        expansions = tuple(float(round(lo + i * step, 6)) for i in range(n))
        kernels = tuple(sp.kernels or defaults["kernels"])
        for kernel in kernels:
            if kernel % 2 == 0 or kernel > limits.MAX_KERNEL:
                raise ConfigError(f"space.kernels: expected odd integers in [1, {limits.MAX_KERNEL}], got {shown(kernel)}")
        S = t.num_stages
        dmin, dmax = sp.depth
        if not 1 <= dmin <= dmax <= limits.MAX_DEPTH:
            raise ConfigError(f"space.depth: expected [min, max] with 1 <= min <= max <= {limits.MAX_DEPTH}, "
                              f"got {shown(list(sp.depth))}")
        depth_max = [dmax] * S
        if sp.first_stage_max_depth is not None:
            depth_max[0] = min(dmax, sp.first_stage_max_depth)
        a, b, c = sp.stem_channels
        x, y, z = sp.channels
        _grid_size("space.stem_channels", a, b, c, 1, limits.MAX_CHANNELS)
        _grid_size("space.channels", x, y, z, 1, limits.MAX_CHANNELS)
        return SearchSpace(t, tuple(range(a, b + 1, c)), tuple(range(x, y + 1, z)), expansions, kernels,
                           (dmin,) * S, tuple(depth_max), sp.multiple)

    def to_dict(self) -> dict:
        """JSON-ready resolved configuration (written next to every result)."""
        budget = asdict(self.budget)
        if self.budget.latency is None and self.budget.latency_table is None:
            del budget["latency"], budget["latency_table"]  # runs without latency keep their identity
        d = {"name": self.name, "template": asdict(self.template), "space": asdict(self.space),
             "budget": budget, "objective": asdict(self.objective), "search": asdict(self.search),
             "crosscheck": asdict(self.crosscheck)}
        return jsonable(d)

    def with_overrides(self, *, macs=None, params=None, rho=None, block=None, image_size=None, seed=None,
                       convention=None, alpha=None, beta=None, latency=None, latency_table=None) -> "Config":
        """A copy with command-line overrides applied (each validated here)."""
        cfg = self
        if block is not None:
            if block not in BLOCKS:
                raise ConfigError(f"--block: expected one of {', '.join(BLOCKS)}, got {block!r}")
            t = replace(cfg.template, blocks=(block,) * cfg.template.num_stages)
            sp = cfg.space
            if family(block) != family(cfg.template.blocks[0]):
                sp = replace(sp, expansion=None, kernels=None)
                if rho is None:
                    rho = FAMILY_DEFAULTS[family(block)]["rho"]
            cfg = replace(cfg, template=t, space=sp)
        if image_size is not None:
            if isinstance(image_size, bool) or not isinstance(image_size, int) \
                    or not 1 <= image_size <= limits.MAX_IMAGE_SIDE:
                raise ConfigError(f"--image-size: expected an integer in [1, {limits.MAX_IMAGE_SIDE}], "
                                  f"got {shown(image_size)}")
            try:
                cfg = replace(cfg, template=replace(cfg.template, image_size=int(image_size)))
            except ValueError as exc:
                raise ConfigError(f"--image-size: {exc}") from None
        b = cfg.budget
        if latency is not None and latency_table is None and b.latency_table is None:
            raise ConfigError("--latency: expected --latency-table TABLE (written by `run.py profile`) to predict it from")
        b = Budget(rho=b.rho if rho is None else _positive(rho, "--rho"),
                   macs=b.macs if macs is None else macs, params=b.params if params is None else params,
                   max_layers=b.max_layers, monotone=b.monotone, latency=b.latency if latency is None else latency,
                   latency_table=b.latency_table if latency_table is None else str(latency_table))
        o = cfg.objective
        if convention is not None and convention not in CONVENTIONS:
            raise ConfigError(f"--convention: expected one of {', '.join(CONVENTIONS)}, got {convention!r}")
        if alpha is not None:
            alpha = tuple(number()(a, "--alpha") for a in alpha)
        o = replace(o, convention=convention or o.convention, alpha=o.alpha if alpha is None else alpha,
                    beta=o.beta if beta is None else number()(beta, "--beta"))
        s = cfg.search if seed is None else replace(cfg.search, seed=integer(0, limits.MAX_SEED)(seed, "--seed"))
        cfg = replace(cfg, budget=b, objective=o, search=s)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        try:
            check_alpha(self.objective.alpha, self.template.num_segments) if self.objective.alpha else None
        except ValueError as exc:
            raise ConfigError(f"objective.{exc}") from None
        space = self.search_space()
        if self.budget.latency is not None:
            # A corrupt table, or one that lacks this space's ops, fails now rather than in a worker.
            self.budget.latency_model().check_space(space)


def _positive(v, field):
    if isinstance(v, bool) or not (isinstance(v, (int, float)) and v > 0 and np.isfinite(v)):
        raise ConfigError(f"{field}: expected a positive finite number, got {shown(v)}")
    return float(v)


def _grid_size(field: str, lo, hi, step, low: float, high: float) -> int:
    """Number of values of a [min, max, step] grid, refused before it is built when it is absurd."""
    for v in (lo, hi, step):
        if not np.isfinite(v):
            raise ConfigError(f"{field}: expected finite numbers [min, max, step], got {shown([lo, hi, step])}")
    if not (low <= lo <= hi <= high and step > 0):
        raise ConfigError(f"{field}: expected [min, max, step] with {low:g} <= min <= max <= {high:g} and step > 0, "
                          f"got {shown([lo, hi, step])}")
    n = (hi - lo) / step + 1
    if n > limits.MAX_GRID:
        raise ConfigError(f"{field}: [min, max, step] = {shown([lo, hi, step])} gives {n:,.0f} values; "
                          f"expected at most {limits.MAX_GRID} (raise the step)")
    return int(round(n - 1)) + 1


def _time(v, f):
    from .latency.table import parse_time

    try:
        return parse_time(v, f)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _quantity_or_off(v, f):
    if v is False or v == "off" or v == 0:
        return None
    return parse_quantity(v, f)


_POS = integer(1)
_ANY = lambda v, f: v  # noqa: E731 - a sub-table, checked by its own spec


def load_config(source: str | Path | None = None) -> Config:
    """Read a TOML preset by path or by name (``r50`` → ``configs/r50.toml``).

    Raises:
        ConfigError: for a missing file, bad TOML, unknown keys or invalid values.
    """
    path, data = read_toml(DEFAULT_PRESET if source is None else source, CONFIG_DIR, "preset")
    src = str(path)
    top = take(data, "config", {"name": lambda v, f: str(v), "template": _ANY, "space": _ANY, "budget": _ANY,
                                "objective": _ANY, "search": _ANY, "crosscheck": _ANY}, src)
    if "template" not in top:
        raise ConfigError(f"{src}: missing [template] table")
    t = take(top["template"], "template", {
        "blocks": sequence(choice(BLOCKS)), "strides": sequence(integer()), "head": integer(), "stem_kernel": _POS,
        "stem_stride": integer(), "image_size": integer(1, limits.MAX_IMAGE_SIDE),
        "in_channels": integer(1, limits.MAX_IN_CHANNELS), "num_classes": integer(1, limits.MAX_CLASSES)}, src)
    if "blocks" not in t or "strides" not in t:
        raise ConfigError(f"{src}: template.blocks and template.strides are required")
    head = t.pop("head", 0)
    try:
        template = Template(head=head or None, **t)
    except ValueError as exc:
        raise ConfigError(f"{src}: {exc}") from None
    sp = take(top.get("space", {}), "space", {
        "stem_channels": sequence(_POS, 3), "channels": sequence(_POS, 3), "expansion": sequence(number(), 3),
        "kernels": sequence(_POS), "depth": sequence(_POS, 2), "first_stage_max_depth": _POS,
        "multiple": _POS}, src)
    space = SpaceConfig(**sp)
    b = take(top.get("budget", {}), "budget", {
        "macs": _quantity_or_off, "params": _quantity_or_off, "rho": number(), "max_layers": _POS,
        "monotone": boolean, "latency": _time, "latency_table": lambda v, f: str(v)}, src)
    default_rho = FAMILY_DEFAULTS[family(template.blocks[0])]["rho"]
    try:
        budget = Budget(rho=b.get("rho", default_rho), macs=b.get("macs"), params=b.get("params"),
                        max_layers=b.get("max_layers"), monotone=b.get("monotone", True), latency=b.get("latency"),
                        latency_table=b.get("latency_table"))
    except ValueError as exc:
        raise ConfigError(f"{src}: {exc}") from None
    o = take(top.get("objective", {}), "objective", {
        "alpha": sequence(number()), "beta": number(), "convention": choice(CONVENTIONS)}, src)
    objective = ObjectiveConfig(**o)
    s = take(top.get("search", {}), "search", {
        "pop_size": integer(1, limits.MAX_POP_SIZE), "generations": integer(1, limits.MAX_COUNT),
        "restarts": integer(1, limits.MAX_COUNT), "chains": integer(1, limits.MAX_CHAINS),
        "polish_top": integer(1, limits.MAX_COUNT), "perturbations": integer(0, limits.MAX_COUNT),
        "finish": integer(0, limits.MAX_COUNT), "local_search": boolean, "pair_steps": sequence(_POS),
        "transfer_steps": _steps_or_none, "depth_moves": integer(0, limits.MAX_COUNT),
        "crossover_prob": number(0, 1), "crossover_eta": number(0, open_low=True),
        "mutation_eta": number(0, open_low=True), "relax": integer(0, limits.MAX_COUNT), "relax_evaluations": _POS,
        "seed": integer(0, limits.MAX_SEED), "jobs": integer(0, 4096)}, src)
    c = take(top.get("crosscheck", {}), "crosscheck", {
        "starts": integer(0), "tolerance": number(0, 1, open_low=True, open_high=True), "maxiter": _POS,
        "polish_iterations": integer(0), "polish_starts": _POS}, src)
    cfg = Config(top.get("name", path.stem), template, space, budget, objective, SearchSettings(**s),
                 CrossCheckSettings(**c))
    try:
        cfg.validate()
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{src}: {exc}") from None
    return cfg


def _steps_or_none(v, where):
    """Step sizes (positive integers), or an empty list for none."""
    return () if isinstance(v, (list, tuple)) and not v else sequence(_POS)(v, where)


def preset_names() -> list[str]:
    return schema.preset_names(CONFIG_DIR)
