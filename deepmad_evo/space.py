"""Topology templates, search spaces and the integer genotype vector the search works on.

A *template* fixes what is not searched (image size, stem kernel/stride, per-stage block family
and stride, head width); a *search space* adds the admissible values of what is. The genotype
vector ``x`` of a space with S stages has ``1 + 4·S`` integers, grouped by kind::

    x = [stem, out_1..out_S, expansion_1..expansion_S, kernel_1..kernel_S, depth_1..depth_S]

``stem``, ``out``, ``expansion`` and ``kernel`` are indices into the space's value lists,
``depth`` is the depth itself. ``btn = max(m, round(expansion·out / m)·m)`` with m the channel
multiple (8 by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .genotype import BLOCKS, Genotype, Head, Stage, Stem
from .units import segment_ids


@dataclass(frozen=True)
class Template:
    """The fixed part of a network: everything but widths, kernels and depths."""

    blocks: tuple[str, ...]
    strides: tuple[int, ...]
    head: int | None = None
    stem_kernel: int = 3
    stem_stride: int = 2
    image_size: int = 224
    in_channels: int = 3
    num_classes: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        if len(self.blocks) != len(self.strides) or not self.blocks:
            raise ValueError(
                f"template.strides: expected one stride per stage ({len(self.blocks)} stages), got {list(self.strides)}"
            )
        for i, b in enumerate(self.blocks):
            if b not in BLOCKS:
                raise ValueError(f"template.blocks[{i}]: expected one of {', '.join(BLOCKS)}, got {b!r}")
        for i, s in enumerate(self.strides):
            if s not in (1, 2):
                raise ValueError(f"template.strides[{i}]: expected 1 or 2, got {s}")
        n_down = sum(s == 2 for s in (self.stem_stride, *self.strides))
        if self.image_size < 2 ** max(n_down - 1, 0) + (n_down > 0):
            raise ValueError(
                f"image_size: {self.image_size} is too small for {n_down} stride-2 units; "
                f"expected at least {2 ** max(n_down - 1, 0) + (n_down > 0)}"
            )

    @classmethod
    def of(cls, genotype: Genotype) -> "Template":
        return cls(genotype.blocks, tuple(st.s for st in genotype.stages),
                   None if genotype.head is None else genotype.head.out, genotype.stem.k, genotype.stem.s,
                   genotype.image_size, genotype.in_channels, genotype.num_classes)

    @property
    def num_stages(self) -> int:
        return len(self.blocks)

    def genotype(self, stem_out: int, out, btn, kernel, depth) -> Genotype:
        """Fill the template with searched numbers."""
        stages = tuple(Stage(b, int(o), int(t), int(k), s, int(d))
                       for b, s, o, t, k, d in zip(self.blocks, self.strides, out, btn, kernel, depth))
        return Genotype(Stem(int(stem_out), self.stem_kernel, self.stem_stride), stages,
                        None if self.head is None else Head(self.head), self.image_size, self.in_channels,
                        self.num_classes)

    # Geometry is fixed by the template, so the population evaluator reads it from here.
    @cached_property
    def stage_segments(self) -> tuple[int, ...]:
        """Segment of each stage (of its first block; later blocks have stride 1)."""
        ids = segment_ids([self.stem_stride, *self.strides])
        return tuple(ids[1:])

    @cached_property
    def num_segments(self) -> int:
        return self.stage_segments[-1] + 1 if self.stage_segments else 1

    def sides(self, convention: str = "torch") -> tuple[list, list]:
        """Per-stage (r_in, r_out) of the first block, plus the stem's, as ([stem, stages…] in, out)."""
        r = self.image_size if convention == "torch" else float(self.image_size)
        r_in, r_out = [], []
        for s in (self.stem_stride, *self.strides):
            r_in.append(r)
            r = -(-r // s) if convention == "torch" else r / s
            r_out.append(r)
        return r_in, r_out


@dataclass(frozen=True)
class SearchSpace:
    """Admissible values of every searched number, per stage where it matters."""

    template: Template
    stem_channels: tuple[int, ...]
    channels: tuple[int, ...]
    expansions: tuple[float, ...]
    kernels: tuple[int, ...]
    depth_min: tuple[int, ...]
    depth_max: tuple[int, ...]
    multiple: int = 8

    def __post_init__(self) -> None:
        S = self.template.num_stages
        for name in ("depth_min", "depth_max"):
            v = tuple(int(d) for d in getattr(self, name))
            if len(v) != S:
                raise ValueError(f"space.{name}: expected {S} values (one per stage), got {list(v)}")
            object.__setattr__(self, name, v)
        for name in ("stem_channels", "channels", "expansions", "kernels"):
            v = tuple(getattr(self, name))
            if not v:
                raise ValueError(f"space.{name}: expected at least one value, got none")
            if list(v) != sorted(set(v)):
                raise ValueError(f"space.{name}: expected strictly increasing values, got {list(v)}")
            object.__setattr__(self, name, v)
        for i, (lo, hi) in enumerate(zip(self.depth_min, self.depth_max)):
            if not 1 <= lo <= hi:
                raise ValueError(f"space.depth: stage {i} expected 1 <= min <= max, got [{lo}, {hi}]")
        for k in self.kernels:
            if k < 1 or k % 2 == 0:
                raise ValueError(f"space.kernels: expected odd integers >= 1, got {k}")
        if min(self.expansions) <= 0:
            raise ValueError(f"space.expansions: expected positive ratios, got {min(self.expansions)}")

    @property
    def num_stages(self) -> int:
        return self.template.num_stages

    @property
    def n_var(self) -> int:
        return 1 + 4 * self.num_stages

    @cached_property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(xl, xu), inclusive integer bounds of the genotype vector."""
        S = self.num_stages
        xl = np.concatenate([[0], np.zeros(3 * S, int), self.depth_min]).astype(int)
        xu = np.concatenate([[len(self.stem_channels) - 1], np.full(S, len(self.channels) - 1),
                             np.full(S, len(self.expansions) - 1), np.full(S, len(self.kernels) - 1),
                             self.depth_max]).astype(int)
        return xl, xu

    @cached_property
    def _tables(self):
        return (np.asarray(self.stem_channels, dtype=np.int64), np.asarray(self.channels, dtype=np.int64),
                np.asarray(self.expansions, dtype=float), np.asarray(self.kernels, dtype=np.int64))

    def decode(self, X: np.ndarray):
        """Integer vectors (N, n_var) → (stem_out (N,), out, btn, kernel, depth (N, S)), all int64.

        Raises:
            ValueError: for non-integer entries (a float vector must hold whole numbers) or
                entries outside ``bounds``; nothing is truncated or clipped silently.
        """
        X = np.asarray(X)
        if not np.issubdtype(X.dtype, np.integer):
            if X.dtype == bool or not np.issubdtype(X.dtype, np.floating):
                raise ValueError(f"X: expected integer genotype vectors, got dtype {X.dtype}")
            fractional = ~np.isfinite(X) | (X != np.round(X))
            if fractional.any():
                i, j = np.argwhere(fractional)[0] if X.ndim == 2 else (0, np.argwhere(fractional)[0][-1])
                value = X[i, j] if X.ndim == 2 else X.ravel()[j]
                raise ValueError(f"X[{i}, {j}]: expected an integer genotype vector, got {value.item()!r}")
            X = X.astype(np.int64)
        xl, xu = self.bounds
        if X.ndim != 2 or X.shape[1] != self.n_var:
            raise ValueError(f"X: expected shape (N, {self.n_var}), got {X.shape}")
        outside = (X < xl) | (X > xu)
        if outside.any():
            i, j = np.argwhere(outside)[0]
            raise ValueError(f"X[{i}, {j}]: expected an integer in [{xl[j]}, {xu[j]}], got {X[i, j]}")
        S = self.num_stages
        stem_t, ch_t, ex_t, k_t = self._tables
        stem = stem_t[X[:, 0]]
        out = ch_t[X[:, 1:1 + S]]
        m = self.multiple
        btn = np.maximum(m, np.floor(ex_t[X[:, 1 + S:1 + 2 * S]] * out / m + 0.5).astype(np.int64) * m)
        kernel = k_t[X[:, 1 + 2 * S:1 + 3 * S]]
        depth = X[:, 1 + 3 * S:1 + 4 * S]
        return stem, out, btn, kernel, depth

    def genotype(self, x: np.ndarray) -> Genotype:
        stem, out, btn, kernel, depth = self.decode(np.asarray(x)[None, :])
        return self.template.genotype(stem[0], out[0], btn[0], kernel[0], depth[0])

    def encode(self, genotype: Genotype) -> np.ndarray:
        """Nearest genotype vector of a genotype with this template (values snapped to the grid)."""
        if Template.of(genotype) != self.template:
            raise ValueError("genotype: its template (blocks, strides, head, stem, image size) differs from the space's")
        S = self.num_stages
        x = np.zeros(self.n_var, dtype=int)
        x[0] = _nearest(self.stem_channels, genotype.stem.out)
        for i, st in enumerate(genotype.stages):
            x[1 + i] = _nearest(self.channels, st.out)
            x[1 + S + i] = _nearest(self.expansions, st.btn / st.out)
            x[1 + 2 * S + i] = _nearest(self.kernels, st.k)
            x[1 + 3 * S + i] = min(max(st.depth, self.depth_min[i]), self.depth_max[i])
        return x

    def repair_monotone(self, X: np.ndarray) -> np.ndarray:
        """Make stage output channels non-decreasing (guideline 3) by a running maximum of the indices."""
        X = np.array(X, dtype=np.int64, copy=True)
        S = self.num_stages
        X[:, 1:1 + S] = np.maximum.accumulate(X[:, 1:1 + S], axis=1)
        return X

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform random vectors within bounds."""
        xl, xu = self.bounds
        return rng.integers(xl, xu + 1, size=(n, self.n_var))


def _nearest(values, v) -> int:
    return int(np.argmin(np.abs(np.asarray(values, dtype=float) - v)))
