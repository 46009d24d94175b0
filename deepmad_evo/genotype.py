"""Genotype: the searched network description, its JSON and text forms, and the reference reader.

A genotype is a fixed topology template (image size, strides, block families, head) plus the
searched integers (widths, kernels, depths). Three interchangeable forms exist:

- JSON (``deepmad-evo/genotype/1``), the on-disk format written by every search;
- a compact one-line text form, e.g.
  ``i224_c3_n1000 stem_k3_s2_c32 mbse_d2_k5_s2_b240_c40 head_c1792``;
- the reference implementation's (TinyNAS) structure files, read only.

Every reader validates at the boundary and raises ``GenotypeError`` (a ``ValueError``) whose
message names the field, the value and what was expected.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import io, limits
from .io import atomic_write_text
from .limits import shown

FORMAT = "deepmad-evo/genotype/1"
BLOCKS = ("basic", "bottleneck", "mbconv", "mbconv_se")
RESNET_BLOCKS = ("basic", "bottleneck")
MOBILE_BLOCKS = ("mbconv", "mbconv_se")

# Short block names of the text form; kept free of "_" so tokens split cleanly.
_BLOCK_TOKEN = {"basic": "basic", "bottleneck": "bneck", "mbconv": "mb", "mbconv_se": "mbse"}
_TOKEN_BLOCK = {v: k for k, v in _BLOCK_TOKEN.items()}

# TinyNAS structure-file classes (DESIGN.md §1).
_TINYNAS_BLOCK = {
    "SuperResKXKX": "basic",
    "SuperResK1KXK1": "bottleneck",
    "SuperResK1DWK1": "mbconv",
    "SuperResK1DWSEK1": "mbconv_se",
}


class GenotypeError(ValueError):
    """A genotype (or a file claiming to be one) is malformed."""


# Largest value per field name (channel widths otherwise), from ``limits``.
_MAXIMUM = {"depth": limits.MAX_DEPTH, "image_size": limits.MAX_IMAGE_SIDE, "in_channels": limits.MAX_IN_CHANNELS,
            "num_classes": limits.MAX_CLASSES}


def _int(value: Any, where: str, minimum: int = 1, maximum: int | None = None) -> int:
    if maximum is None:
        maximum = _MAXIMUM.get(where.rsplit(".", 1)[-1], limits.MAX_CHANNELS)
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenotypeError(f"{where}: expected an integer >= {minimum}, got {shown(value)}")
    if value < minimum:
        raise GenotypeError(f"{where}: expected an integer >= {minimum}, got {value}")
    if value > maximum:
        raise GenotypeError(f"{where}: expected an integer <= {maximum} (the largest this tool builds), "
                            f"got {shown(value)}")
    return value


def _kernel(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise GenotypeError(f"{where}: expected an odd integer >= 1, got {shown(value)}")
    if value > limits.MAX_KERNEL:
        raise GenotypeError(f"{where}: expected an odd integer <= {limits.MAX_KERNEL}, got {shown(value)}")
    return value


def _stride(value: Any, where: str) -> int:
    if isinstance(value, bool) or value not in (1, 2):
        raise GenotypeError(f"{where}: expected 1 or 2, got {shown(value)}")
    return value


@dataclass(frozen=True)
class Stem:
    """The first conv: ``in_channels -> out`` with kernel ``k`` and stride ``s``."""

    out: int
    k: int = 3
    s: int = 2

    def __post_init__(self) -> None:
        _int(self.out, "stem.out")
        _kernel(self.k, "stem.k")
        _stride(self.s, "stem.s")


@dataclass(frozen=True)
class Stage:
    """``depth`` blocks of one family; the first takes the stage input and stride."""

    block: str
    out: int
    btn: int
    k: int
    s: int
    depth: int

    def __post_init__(self) -> None:
        self.validate("stage")

    def validate(self, where: str) -> None:
        if self.block not in BLOCKS:
            raise GenotypeError(f"{where}.block: expected one of {', '.join(BLOCKS)}, got {shown(self.block)}")
        _int(self.out, f"{where}.out")
        _int(self.btn, f"{where}.btn")
        _kernel(self.k, f"{where}.k")
        _stride(self.s, f"{where}.s")
        _int(self.depth, f"{where}.depth")


@dataclass(frozen=True)
class Head:
    """Optional final 1x1 conv to ``out`` channels before pooling."""

    out: int

    def __post_init__(self) -> None:
        _int(self.out, "head.out")


@dataclass(frozen=True)
class Genotype:
    """A whole network: template and searched numbers (DESIGN.md §1)."""

    stem: Stem
    stages: tuple[Stage, ...]
    head: Head | None = None
    image_size: int = 224
    in_channels: int = 3
    num_classes: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        _int(self.image_size, "image_size")
        _int(self.in_channels, "in_channels")
        _int(self.num_classes, "num_classes")
        if not self.stages:
            raise GenotypeError("stages: expected at least one stage, got none")
        if len(self.stages) > limits.MAX_STAGES:
            raise GenotypeError(f"stages: expected at most {limits.MAX_STAGES} stages, got {len(self.stages)}")
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, Stage):
                raise GenotypeError(f"stages[{i}]: expected a Stage, got {type(stage).__name__}")
            stage.validate(f"stages[{i}]")
        # A stride-2 unit at side 1 would still produce side 1, but the network would then
        # pool nothing: require every stride-2 unit to see a side >= 2.
        side = self.image_size
        for where, s in [("stem.s", self.stem.s)] + [(f"stages[{i}].s", st.s) for i, st in enumerate(self.stages)]:
            if s == 2 and side < 2:
                raise GenotypeError(
                    f"image_size: {self.image_size} is too small for the strides "
                    f"(feature map is 1x1 before {where}); expected at least {2 ** self.num_downsamples}"
                )
            side = -(-side // s)

    @property
    def num_downsamples(self) -> int:
        return sum(1 for s in [self.stem.s] + [st.s for st in self.stages] if s == 2)

    @property
    def blocks(self) -> tuple[str, ...]:
        return tuple(st.block for st in self.stages)

    # ---------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "image_size": self.image_size,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "stem": {"out": self.stem.out, "k": self.stem.k, "s": self.stem.s},
            "stages": [
                {"block": s.block, "out": s.out, "btn": s.btn, "k": s.k, "s": s.s, "depth": s.depth}
                for s in self.stages
            ],
            "head": None if self.head is None else {"out": self.head.out},
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> "Genotype":
        if not isinstance(data, Mapping):
            raise GenotypeError(f"genotype: expected a JSON object, got {type(data).__name__}")
        _keys(data, "genotype", required={"format", "stem", "stages"},
              optional={"image_size", "in_channels", "num_classes", "head", "design"})
        if "design" in data and not isinstance(data["design"], Mapping):
            raise GenotypeError(f"design: expected an object (how the genotype was designed), got {data['design']!r}")
        if data["format"] != FORMAT:
            raise GenotypeError(f"format: expected {FORMAT!r}, got {shown(data['format'])}")
        stem = data["stem"]
        if not isinstance(stem, Mapping):
            raise GenotypeError(f"stem: expected an object, got {shown(stem)}")
        _keys(stem, "stem", required={"out", "k", "s"})
        stem_ = Stem(_int(stem["out"], "stem.out"), _kernel(stem["k"], "stem.k"), _stride(stem["s"], "stem.s"))
        stages = data["stages"]
        if not isinstance(stages, list) or not stages:
            raise GenotypeError(f"stages: expected a non-empty list, got {shown(stages)}")
        parsed = []
        for i, st in enumerate(stages):
            where = f"stages[{i}]"
            if not isinstance(st, Mapping):
                raise GenotypeError(f"{where}: expected an object, got {shown(st)}")
            _keys(st, where, required={"block", "out", "btn", "k", "s", "depth"})
            parsed.append(_stage(st["block"], st["out"], st["btn"], st["k"], st["s"], st["depth"], where))
        head = data.get("head")
        if head is not None:
            if not isinstance(head, Mapping):
                raise GenotypeError(f"head: expected an object or null, got {shown(head)}")
            _keys(head, "head", required={"out"})
            head = Head(_int(head["out"], "head.out"))
        return cls(
            stem=stem_,
            stages=tuple(parsed),
            head=head,
            image_size=_int(data.get("image_size", 224), "image_size"),
            in_channels=_int(data.get("in_channels", 3), "in_channels"),
            num_classes=_int(data.get("num_classes", 1000), "num_classes"),
        )

    @classmethod
    def from_json(cls, text: str) -> "Genotype":
        try:
            data = io.loads_json(text, "genotype")
        except ValueError as exc:
            raise GenotypeError(str(exc)) from None
        return cls.from_dict(data)

    # ---------------------------------------------------------------- text
    def to_text(self) -> str:
        """Compact one-line form; ``Genotype.from_text`` inverts it exactly."""
        parts = [f"i{self.image_size}_c{self.in_channels}_n{self.num_classes}",
                 f"stem_k{self.stem.k}_s{self.stem.s}_c{self.stem.out}"]
        for st in self.stages:
            parts.append(f"{_BLOCK_TOKEN[st.block]}_d{st.depth}_k{st.k}_s{st.s}_b{st.btn}_c{st.out}")
        if self.head is not None:
            parts.append(f"head_c{self.head.out}")
        return " ".join(parts)

    @classmethod
    def from_text(cls, text: str) -> "Genotype":
        if not isinstance(text, str):
            raise GenotypeError(f"genotype text: expected a string, got {type(text).__name__}")
        tokens = text.split()
        if len(tokens) < 3:
            raise GenotypeError(
                f"genotype text: expected 'i<size>_c<in>_n<classes> stem_... <stage>...', got {shown(text)}"
            )
        if len(tokens) > limits.MAX_STAGES + 3:
            raise GenotypeError(f"genotype text: expected at most {limits.MAX_STAGES} stages, got {len(tokens) - 2} tokens")
        header = _fields(tokens[0], "header", "", {"i", "c", "n"})
        stem = _fields(tokens[1], "stem", "stem", {"k", "s", "c"})
        stages, head = [], None
        for pos, token in enumerate(tokens[2:]):
            kind = token.split("_", 1)[0]
            if head is not None:
                raise GenotypeError(f"genotype text: token {shown(token)} after the head; the head must come last")
            if kind == "head":
                head = Head(_fields(token, "head", "head", {"c"})["c"])
                continue
            if kind not in _TOKEN_BLOCK:
                raise GenotypeError(
                    f"genotype text: unknown token {shown(token)}; expected a stage "
                    f"({', '.join(_TOKEN_BLOCK)}) or head_c<N>"
                )
            f = _fields(token, f"stages[{len(stages)}]", kind, {"d", "k", "s", "b", "c"})
            stages.append(_stage(_TOKEN_BLOCK[kind], f["c"], f["b"], f["k"], f["s"], f["d"], f"stages[{len(stages)}]"))
        if not stages:
            raise GenotypeError("genotype text: expected at least one stage token")
        return cls(Stem(stem["c"], _kernel(stem["k"], "stem.k"), _stride(stem["s"], "stem.s")),
                   tuple(stages), head, header["i"], header["c"], header["n"])

    # ---------------------------------------------------------------- reference files
    @classmethod
    def from_tinynas(cls, text: str, image_size: int = 224, num_classes: int = 1000) -> "Genotype":
        """Read a TinyNAS structure file (a Python literal; parsed with ``ast.literal_eval``)."""
        try:
            io.check_depth(text, "structure file", python=True)
        except ValueError as exc:
            raise GenotypeError(str(exc)) from None
        try:
            data = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise GenotypeError(f"structure file: not a Python literal ({type(exc).__name__}: "
                                f"{str(exc)[:limits.SHOWN]})") from None
        if isinstance(data, Mapping):
            if "best_structures" not in data:
                raise GenotypeError("structure file: expected a 'best_structures' key")
            structs = data["best_structures"]
            if not isinstance(structs, list) or not structs:
                raise GenotypeError("best_structures: expected a non-empty list of structures")
            blocks = structs[0]
        else:
            blocks = data
        if not isinstance(blocks, list) or len(blocks) < 2:
            raise GenotypeError("best_structures[0]: expected a list of at least a stem and one stage")
        for i, b in enumerate(blocks):
            if not isinstance(b, Mapping) or "class" not in b:
                raise GenotypeError(f"best_structures[0][{i}]: expected a dict with a 'class' key, got {shown(b)}")
        first = blocks[0]
        if first["class"] != "ConvKXBNRELU":
            raise GenotypeError(f"best_structures[0][0].class: expected 'ConvKXBNRELU' (stem), got {shown(first['class'])}")
        stem = Stem(_int(first.get("out"), "stem.out"), _kernel(first.get("k"), "stem.k"), _stride(first.get("s"), "stem.s"))
        in_channels = _int(first.get("in", 3), "in_channels")
        stages, head = [], None
        prev = stem.out
        for i, b in enumerate(blocks[1:], start=1):
            where = f"best_structures[0][{i}]"
            if b["class"] == "ConvKXBNRELU":
                if i != len(blocks) - 1:
                    raise GenotypeError(f"{where}: a ConvKXBNRELU head is only allowed last")
                if b.get("k", 1) != 1 or b.get("s", 1) != 1:
                    raise GenotypeError(f"{where}: expected a 1x1 stride-1 head conv, got k={shown(b.get('k'))} s={shown(b.get('s'))}")
                head = Head(_int(b.get("out"), "head.out"))
                continue
            if b["class"] not in _TINYNAS_BLOCK:
                raise GenotypeError(
                    f"{where}.class: expected one of {', '.join(_TINYNAS_BLOCK)} or ConvKXBNRELU, got {shown(b['class'])}"
                )
            if "in" in b and b["in"] != prev:
                raise GenotypeError(f"{where}.in: expected {prev} (the previous output), got {shown(b['in'])}")
            stages.append(_stage(_TINYNAS_BLOCK[b["class"]], b.get("out"), b.get("btn"), b.get("k"), b.get("s"),
                                 b.get("L"), f"stages[{len(stages)}]"))
            prev = stages[-1].out
        return cls(stem, tuple(stages), head, image_size, in_channels, num_classes)


def _stage(block, out, btn, k, s, depth, where) -> Stage:
    if block not in BLOCKS:
        raise GenotypeError(f"{where}.block: expected one of {', '.join(BLOCKS)}, got {shown(block)}")
    return Stage(block, _int(out, f"{where}.out"), _int(btn, f"{where}.btn"), _kernel(k, f"{where}.k"),
                 _stride(s, f"{where}.s"), _int(depth, f"{where}.depth"))


def _keys(data: Mapping, where: str, required: set, optional: set = frozenset()) -> None:
    unknown = sorted(set(data) - required - set(optional))
    if unknown:
        raise GenotypeError(f"{where}: unknown key {shown(unknown[0])}; expected keys {', '.join(sorted(required | set(optional)))}")
    missing = sorted(required - set(data))
    if missing:
        raise GenotypeError(f"{where}.{missing[0]}: missing")


def _fields(token: str, where: str, kind: str, keys: set) -> dict:
    parts = token.split("_")
    if kind:
        if parts[0] != kind:
            raise GenotypeError(f"genotype text: expected a {kind!r} token, got {shown(token)}")
        parts = parts[1:]
    out: dict[str, int] = {}
    for p in parts:
        key, digits = p[:1], p[1:]
        # ASCII digits only: str.isdigit() also accepts superscripts, which int() then refuses.
        if key not in keys or not (digits.isascii() and digits.isdigit()) or (len(digits) > 1 and digits[0] == "0"):
            raise GenotypeError(
                f"genotype text: {where}: bad field {shown(p)} in {shown(token)}; expected "
                f"{'_'.join(k + '<int>' for k in sorted(keys))}"
            )
        if len(digits) > 9:
            raise GenotypeError(f"genotype text: {where}: field {shown(p)} is too large; expected at most 9 digits")
        if key in out:
            raise GenotypeError(f"genotype text: {where}: field {key!r} given twice in {shown(token)}")
        out[key] = int(digits)
    missing = sorted(keys - set(out))
    if missing:
        raise GenotypeError(f"genotype text: {where}: missing field {missing[0]!r} in {shown(token)}")
    return out


def load_genotype(source: str | os.PathLike, image_size: int | None = None) -> Genotype:
    """Read a genotype from a path (JSON, text form or TinyNAS structure file) or a text-form string.

    Args:
        source: a file path, or the one-line text form itself.
        image_size: overrides the image size (TinyNAS files carry none; default 224).

    Returns:
        The validated genotype.
    """
    path = Path(source)
    text = None
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        is_file = False
    if is_file:
        try:
            text = io.read_text(path, "genotype")
        except ValueError as exc:
            raise GenotypeError(str(exc)) from None
    else:
        src = str(source).strip()
        if src.startswith("i") and "stem_" in src:
            text = src
        else:
            raise GenotypeError(f"genotype: {shown(str(source))} is neither a readable file nor a genotype text form")
    stripped = text.strip()
    if stripped.startswith("{") and '"format"' in stripped[:200]:
        g = Genotype.from_json(stripped)
    elif stripped.startswith("{") or stripped.startswith("["):
        g = Genotype.from_tinynas(stripped)
    else:
        g = Genotype.from_text(stripped)
    if image_size is not None and image_size != g.image_size:
        g = Genotype(g.stem, g.stages, g.head, image_size, g.in_channels, g.num_classes)
    return g


def save_genotype(genotype: Genotype, path: str | os.PathLike, design: Mapping | None = None) -> None:
    """Write the genotype as ``deepmad-evo/genotype/1`` JSON, atomically.

    Args:
        design: optional record of how it was designed (cost convention, budgets, α, β, preset),
            stored under ``"design"`` so that ``inspect`` checks it the way the search did.
    """
    data = genotype.to_dict()
    if design is not None:
        data["design"] = dict(design)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def load_design(path: str | os.PathLike) -> dict | None:
    """The ``"design"`` record of a genotype JSON file (``None`` for other files or when absent)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    design = data.get("design") if isinstance(data, dict) else None
    return dict(design) if isinstance(design, Mapping) else None
