"""Declarative run configuration: TOML presets read into frozen dataclasses.

Each key is read here and nowhere else; unknown keys are errors naming the file and the key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .costs import CONVENTIONS
from .genotype import BLOCKS, RESNET_BLOCKS
from .io import jsonable
from .objective import DEFAULT_BETA, check_alpha
from .problem import Budget
from .search import SearchSettings
from .space import SearchSpace, Template

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_PRESET = "mb-29m"

_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgGtT]?)\s*$")

# DESIGN.md §6 family defaults: expansion (min, max, step), kernels, ρ0.
FAMILY_DEFAULTS = {
    "resnet": {"expansion": (0.1, 1.0, 0.1), "kernels": (3, 5), "rho": 0.3},
    "mobile": {"expansion": (1.5, 6.0, 0.1), "kernels": (3, 5, 7), "rho": 0.5},
}


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


def parse_quantity(text: Any, field: str) -> float:
    """Parse ``4.5G``, ``29M``, ``300e6`` or a plain number into a float.

    Raises:
        ConfigError: naming ``field`` and the value when it is not a positive quantity.
    """
    if isinstance(text, bool):
        raise ConfigError(f"{field}: expected a positive number with an optional K/M/G/T suffix, got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _QUANTITY.match(str(text))
        if not m:
            raise ConfigError(
                f"{field}: expected a positive number with an optional K/M/G/T suffix (e.g. 4.5G), got {text!r}"
            )
        value = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{field}: expected a positive number, got {text!r}")
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
class SearchConfig:
    pop_size: int = 100
    generations: int = 60
    restarts: int = 2
    chains: int = 6
    perturbations: int = 25
    finish: int = 25
    local_search: bool = True
    seed: int = 0


@dataclass(frozen=True)
class Config:
    """A whole run configuration: template, space, budget, objective and search settings."""

    name: str
    template: Template
    space: SpaceConfig
    budget: Budget
    objective: ObjectiveConfig
    search: SearchConfig

    def search_settings(self, **overrides) -> SearchSettings:
        """The search effort of this config (``overrides`` replace single fields, e.g. ``jobs=1``)."""
        s = self.search
        fields = dict(pop_size=s.pop_size, generations=s.generations, restarts=s.restarts, chains=s.chains,
                      perturbations=s.perturbations, finish=s.finish, local_search=s.local_search)
        return SearchSettings(**{**fields, **overrides})

    def search_space(self) -> SearchSpace:
        t, sp = self.template, self.space
        fam = {family(b) for b in t.blocks}
        if len(fam) > 1 and (sp.expansion is None or sp.kernels is None):
            raise ConfigError("space: a template mixing ResNet and MobileNet blocks needs explicit expansion and kernels")
        defaults = FAMILY_DEFAULTS[fam.pop()]
        lo, hi, step = sp.expansion or defaults["expansion"]
        n = int(round((hi - lo) / step)) + 1
        expansions = tuple(float(round(lo + i * step, 6)) for i in range(n))
        kernels = tuple(sp.kernels or defaults["kernels"])
        S = t.num_stages
        dmin, dmax = sp.depth
        depth_max = [dmax] * S
        if sp.first_stage_max_depth is not None:
            depth_max[0] = min(dmax, sp.first_stage_max_depth)
        a, b, c = sp.stem_channels
        x, y, z = sp.channels
        return SearchSpace(t, tuple(range(a, b + 1, c)), tuple(range(x, y + 1, z)), expansions, kernels,
                           (dmin,) * S, tuple(depth_max), sp.multiple)

    def to_dict(self) -> dict:
        """JSON-ready resolved configuration (written next to every result)."""
        budget = asdict(self.budget)
        if self.budget.latency is None and self.budget.latency_table is None:
            del budget["latency"], budget["latency_table"]  # runs without latency keep their identity
        d = {"name": self.name, "template": asdict(self.template), "space": asdict(self.space),
             "budget": budget, "objective": asdict(self.objective), "search": asdict(self.search)}
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
        o = replace(o, convention=convention or o.convention, alpha=o.alpha if alpha is None else tuple(alpha),
                    beta=o.beta if beta is None else float(beta))
        s = cfg.search if seed is None else replace(cfg.search, seed=int(seed))
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
    if not (isinstance(v, (int, float)) and v > 0):
        raise ConfigError(f"{field}: expected a positive number, got {v!r}")
    return float(v)


def _take(table: Mapping, where: str, spec: dict, src: str) -> dict:
    """Check a TOML table against ``spec`` {key: type-checker}; return the present keys."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{src}: [{where}] must be a table")
    for key in table:
        if key not in spec:
            raise ConfigError(f"{src}: unknown key {where}.{key}; expected one of {', '.join(sorted(spec))}")
    out = {}
    for key, check in spec.items():
        if key in table:
            out[key] = check(table[key], f"{src}: {where}.{key}")
    return out


def _int_(v, f):
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{f}: expected an integer, got {v!r}")
    return v


def _pos_int(v, f):
    v = _int_(v, f)
    if v < 1:
        raise ConfigError(f"{f}: expected an integer >= 1, got {v}")
    return v


def _num(v, f):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{f}: expected a number, got {v!r}")
    return float(v)


def _bool(v, f):
    if not isinstance(v, bool):
        raise ConfigError(f"{f}: expected true or false, got {v!r}")
    return v


def _str_in(choices):
    def check(v, f):
        if v not in choices:
            raise ConfigError(f"{f}: expected one of {', '.join(choices)}, got {v!r}")
        return v
    return check


def _list(item, n=None):
    def check(v, f):
        if not isinstance(v, list) or (n is not None and len(v) != n) or not v:
            raise ConfigError(f"{f}: expected a list{'' if n is None else f' of {n} values'}, got {v!r}")
        return tuple(item(x, f) for x in v)
    return check


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


def load_config(source: str | Path | None = None) -> Config:
    """Read a TOML preset by path or by name (``r50`` → ``configs/r50.toml``).

    Raises:
        ConfigError: for a missing file, bad TOML, unknown keys or invalid values.
    """
    source = DEFAULT_PRESET if source is None else source
    path = Path(source)
    if not path.is_file():
        named = CONFIG_DIR / f"{source}.toml"
        if named.is_file():
            path = named
        else:
            names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
            raise ConfigError(f"--config: {str(source)!r} is neither a file nor a preset; presets: {names}")
    src = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{src}: not valid TOML ({exc})") from None
    top = _take(data, "config", {"name": lambda v, f: str(v), "template": lambda v, f: v, "space": lambda v, f: v,
                                 "budget": lambda v, f: v, "objective": lambda v, f: v, "search": lambda v, f: v}, src)
    if "template" not in top:
        raise ConfigError(f"{src}: missing [template] table")
    t = _take(top["template"], "template", {
        "blocks": _list(_str_in(BLOCKS)), "strides": _list(_int_), "head": _int_, "stem_kernel": _pos_int,
        "stem_stride": _int_, "image_size": _pos_int, "in_channels": _pos_int, "num_classes": _pos_int}, src)
    if "blocks" not in t or "strides" not in t:
        raise ConfigError(f"{src}: template.blocks and template.strides are required")
    head = t.pop("head", 0)
    try:
        template = Template(head=head or None, **t)
    except ValueError as exc:
        raise ConfigError(f"{src}: {exc}") from None
    sp = _take(top.get("space", {}), "space", {
        "stem_channels": _list(_pos_int, 3), "channels": _list(_pos_int, 3), "expansion": _list(_num, 3),
        "kernels": _list(_pos_int), "depth": _list(_pos_int, 2), "first_stage_max_depth": _pos_int,
        "multiple": _pos_int}, src)
    space = SpaceConfig(**sp)
    b = _take(top.get("budget", {}), "budget", {
        "macs": _quantity_or_off, "params": _quantity_or_off, "rho": _num, "max_layers": _pos_int,
        "monotone": _bool, "latency": _time, "latency_table": lambda v, f: str(v)}, src)
    default_rho = FAMILY_DEFAULTS[family(template.blocks[0])]["rho"]
    try:
        budget = Budget(rho=b.get("rho", default_rho), macs=b.get("macs"), params=b.get("params"),
                        max_layers=b.get("max_layers"), monotone=b.get("monotone", True), latency=b.get("latency"),
                        latency_table=b.get("latency_table"))
    except ValueError as exc:
        raise ConfigError(f"{src}: {exc}") from None
    o = _take(top.get("objective", {}), "objective", {
        "alpha": _list(_num), "beta": _num, "convention": _str_in(CONVENTIONS)}, src)
    objective = ObjectiveConfig(**o)
    s = _take(top.get("search", {}), "search", {
        "pop_size": _pos_int, "generations": _pos_int, "restarts": _pos_int, "chains": _pos_int,
        "perturbations": _int_, "finish": _int_, "local_search": _bool, "seed": _int_}, src)
    cfg = Config(top.get("name", path.stem), template, space, budget, objective, SearchConfig(**s))
    try:
        cfg.validate()
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{src}: {exc}") from None
    return cfg


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
