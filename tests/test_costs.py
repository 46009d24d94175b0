"""Cost conventions against DESIGN.md §4/§5 golden values and hand-counted torch formulas."""

import pytest

from deepmad_evo.costs import network_costs
from deepmad_evo.genotype import Genotype, Stage, Stem, load_genotype
from deepmad_evo.units import expand


def _stage_cost(stages, stem_out, convention="tinynas"):
    """Cost of the stages alone: whole network minus the same network's stem (both at 224)."""
    g = Genotype(Stem(stem_out, 3, 2), tuple(stages))
    c = network_costs(expand(g), convention)
    return sum(c.unit_macs[1:]), sum(c.unit_params[1:])


def test_tinynas_bottleneck_worked_example():
    # DESIGN.md §4: c_in 32, btn 40, k 5, out 96, s 2, depth 1 at r = 112.
    macs, params = _stage_cost([Stage("bottleneck", 96, 40, 5, 2, 1)], 32)
    assert params == 48_736
    assert macs == 167_261_696


def test_tinynas_mbconv_worked_example():
    # DESIGN.md §4: c_in 24, out 24, btn 72, k 7, s 2, depth 2 at r = 112.
    macs, params = _stage_cost([Stage("mbconv", 24, 72, 7, 2, 2)], 24)
    assert params == 14_640
    assert macs == 65_554_944


def test_tinynas_r18_totals(published):
    c = network_costs(expand(load_genotype(published / "deepmad-R18.txt")), "tinynas")
    assert c.macs == 1_837_323_208
    assert c.params == 11_153_088


def test_torch_hand_count_basic():
    # stem 3->8 k3 s2 at 32 -> 16; basic stage 8->16 btn 8 k3 s2 depth 2 (16 -> 8); classifier 16->10.
    g = Genotype(Stem(8, 3, 2), (Stage("basic", 16, 8, 3, 2, 2),), image_size=32, num_classes=10)
    c = network_costs(expand(g), "torch")
    stem_p, stem_m = 3 * 8 * 9 + 16, 3 * 8 * 9 * 16 * 16
    b1_p = (8 * 8 * 9 + 16) + (8 * 16 * 9 + 32) + (8 * 16 + 32)  # conv1, conv2, projection
    b1_m = (8 * 8 * 9 + 8 * 16 * 9 + 8 * 16) * 8 * 8
    b2_p = (16 * 8 * 9 + 16) + (8 * 16 * 9 + 32)
    b2_m = (16 * 8 * 9 + 8 * 16 * 9) * 8 * 8
    cls_p, cls_m = 16 * 10 + 10, 16 * 10
    assert c.params == stem_p + b1_p + b2_p + cls_p
    assert c.macs == stem_m + b1_m + b2_m + cls_m


def test_torch_hand_count_mbconv_se_odd_side():
    # image 15 -> stem s2 -> 8 -> stage s2 -> 4; SE squeeze = max(1, round(64/4)//8)*8 = 16.
    g = Genotype(Stem(16, 3, 2), (Stage("mbconv_se", 16, 64, 5, 2, 1),), image_size=15, num_classes=7)
    c = network_costs(expand(g), "torch")
    se = 16
    stem_p, stem_m = 3 * 16 * 9 + 32, 3 * 16 * 9 * 8 * 8
    blk_p = (16 * 64 + 128) + (64 * 25 + 128) + (64 * 16 + 32) + (64 * se + se + se * 64 + 64)
    blk_m = 16 * 64 * 8 * 8 + 64 * 25 * 4 * 4 + 64 * 16 * 4 * 4 + 2 * 64 * se
    assert c.params == stem_p + blk_p + 16 * 7 + 7
    assert c.macs == stem_m + blk_m + 16 * 7


@pytest.mark.parametrize("btn, se", [(240, 56), (8, 8), (64, 16), (100, 24), (36, 8), (1872, 464)])
def test_se_width(btn, se):
    from deepmad_evo.units import se_width

    assert se_width(btn) == se  # max(1, round(btn/4)//8)*8 by hand
