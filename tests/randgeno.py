"""Seeded random genotypes for the decoder tests: small, but covering every structural case."""

from __future__ import annotations

import numpy as np

from deepmad_evo.genotype import BLOCKS, MOBILE_BLOCKS, Genotype, GenotypeError, Head, Stage, Stem

IMAGE_SIZES = (17, 31, 32, 45, 64, 97)


def random_genotype(rng: np.random.Generator) -> Genotype:
    """One small genotype: 1–4 stages of one family or mixed, random strides, odd sides, head or not.

    Mobile stages reuse the previous width with probability ½, so that the identity residual,
    pooled when s = 2, is exercised.
    """
    while True:
        n = int(rng.integers(1, 5))
        mixed = rng.random() < 0.3
        family = str(rng.choice(BLOCKS))
        stem = Stem(int(rng.integers(4, 25)), int(rng.choice([1, 3, 5])), int(rng.integers(1, 3)))
        stages, c = [], stem.out
        for _ in range(n):
            block = str(rng.choice(BLOCKS)) if mixed else family
            out = c if (block in MOBILE_BLOCKS and rng.random() < 0.5) else int(rng.integers(4, 41))
            btn = int(rng.integers(4, 49))
            stages.append(Stage(block, out, btn, int(rng.choice([1, 3, 5])), int(rng.integers(1, 3)),
                                int(rng.integers(1, 4))))
            c = out
        head = Head(int(rng.integers(8, 65))) if rng.random() < 0.5 else None
        try:
            return Genotype(stem, tuple(stages), head, int(rng.choice(IMAGE_SIZES)), int(rng.choice([1, 3])),
                            int(rng.integers(2, 11)))
        except GenotypeError:
            continue  # too many strides for the drawn image size: draw again


def random_genotypes(count: int, seed: int = 0) -> list[Genotype]:
    rng = np.random.default_rng(seed)
    return [random_genotype(rng) for _ in range(count)]
