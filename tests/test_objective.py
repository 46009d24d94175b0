"""DeepMAD objective: DESIGN.md §5 golden values; vectorised evaluation equals the unit-by-unit one."""

import math

import numpy as np
import pytest

from deepmad_evo.genotype import BLOCKS, Genotype, Stage, Stem, load_genotype
from deepmad_evo.objective import evaluate, evaluate_population
from deepmad_evo.space import Template
from deepmad_evo.units import expand

R18_TERMS = [21.262652610355257, 109.48734142511589, 726.9775230465424, 2782.778974431731, 28479.696960090052]
R18_RHO = [0.037037037037037035, 0.05216948600244292, 0.11673517121102076, 0.24644496359268264, 0.2990955537315473]


def test_r18_golden(published):
    ev = evaluate(load_genotype(published / "deepmad-R18.txt"), alpha=(1, 1, 1, 1, 8), beta=10, convention="tinynas")
    assert ev.segment_sides == (112, 56, 28, 14, 7)
    assert ev.layers == 115
    assert ev.entropy_terms == pytest.approx(R18_TERMS, rel=1e-9)
    assert ev.entropy == pytest.approx(32120.203451603797, rel=1e-9)
    assert ev.rho_prefix == pytest.approx(R18_RHO, rel=1e-9)
    assert ev.rho == pytest.approx(0.2990955537315473, rel=1e-9)
    assert ev.weighted_depth_penalty == pytest.approx(458.88993438442947, rel=1e-9)
    assert ev.objective == pytest.approx(31661.31351721937, rel=1e-9)
    assert ev.macs == 1_837_323_208 and ev.params == 11_153_088


def test_segments_follow_strides(published):
    net = expand(load_genotype(published / "deepmad-29M-224.txt"))
    # stem s2, stage1 s1 stays in segment 0; each later stride-2 stage opens one; head joins the last.
    assert net.num_segments == 5
    assert [u.segment for u in net.units if u.kind != "block" or u.index == 0] == [0, 0, 1, 2, 3, 4, 4]


def test_hand_computed_entropy_small():
    # stem 3->8 k3 s2 on 16 -> 8; one mbconv 8->16 btn 32 k3 s2 -> 4; segments [stem] [block].
    g = Genotype(Stem(8, 3, 2), (Stage("mbconv", 16, 32, 3, 2, 1),), image_size=16)
    ev = evaluate(g, alpha=(1, 8), beta=0.0)
    s_stem = 0.5 * math.log(27)
    s_blk = 0.5 * (math.log(8) + math.log(9) + math.log(32))
    assert ev.entropy_terms == pytest.approx([math.log(8 * 64) * s_stem, 8 * math.log(16 * 16) * (s_stem + s_blk)])
    assert ev.rho_prefix == pytest.approx([1 / 27, 4 / math.exp((math.log(27) + math.log(8 * 9 * 32)) / 4)])
    assert ev.weighted_depth_penalty == pytest.approx(0.0)


def test_alpha_length_is_checked(published):
    with pytest.raises(ValueError, match=r"alpha: expected 5 weights \(one per segment\), got 3"):
        evaluate(load_genotype(published / "deepmad-R18.txt"), alpha=(1, 1, 8))


def random_genotypes(rng, n, template=None):
    out = []
    for _ in range(n):
        if template is None:
            S = int(rng.integers(1, 6))
            blocks = tuple(rng.choice(BLOCKS) for _ in range(S))
            strides = tuple(int(rng.integers(1, 3)) for _ in range(S))
            head = int(rng.integers(8, 300)) if rng.random() < 0.5 else None
            t = Template(blocks, strides, head, 3, int(rng.integers(1, 3)), int(rng.integers(33, 200)))
        else:
            t = template
        S = t.num_stages
        outs = rng.integers(1, 64, S) * 8
        out.append(t.genotype(int(rng.integers(1, 9)) * 8, outs, rng.integers(1, 100, S) * 8,
                              rng.choice([1, 3, 5, 7], S), rng.integers(1, 8, S)))
    return out


def _population(genotypes, convention):
    t = Template.of(genotypes[0])
    A = lambda f: np.array([[f(s) for s in g.stages] for g in genotypes])
    return evaluate_population(t, np.array([g.stem.out for g in genotypes]), A(lambda s: s.out), A(lambda s: s.btn),
                               A(lambda s: s.k), A(lambda s: s.depth), convention=convention)


@pytest.mark.parametrize("convention", ["torch", "tinynas"])
def test_vectorised_equals_unit_by_unit(convention):
    rng = np.random.default_rng(7)
    for g0 in random_genotypes(rng, 25):
        batch = random_genotypes(rng, 12, Template.of(g0))
        pop = _population(batch, convention)
        for i, g in enumerate(batch):
            ev = evaluate(g, convention=convention)
            assert pop.objective[i] == pytest.approx(ev.objective, rel=1e-12)
            assert pop.entropy_terms[i] == pytest.approx(ev.entropy_terms, rel=1e-12)
            assert pop.rho_prefix[i] == pytest.approx(ev.rho_prefix, rel=1e-12)
            assert pop.layers[i] == ev.layers
            assert pop.macs[i] == ev.macs and pop.params[i] == ev.params  # exact, both conventions


def test_vectorised_accepts_reals():
    g = random_genotypes(np.random.default_rng(1), 1)[0]
    t = Template.of(g)
    f = lambda attr: np.array([[float(getattr(s, attr)) for s in g.stages]])
    pop = evaluate_population(t, np.array([float(g.stem.out)]), f("out"), f("btn"), f("k"), f("depth"))
    assert pop.objective[0] == pytest.approx(evaluate(g).objective, rel=1e-12)
