"""Genotype forms: JSON, text, reference structure files; validation messages."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepmad_evo.genotype import BLOCKS, Genotype, GenotypeError, Head, Stage, Stem, load_genotype, save_genotype


@st.composite
def genotypes(draw):
    n = draw(st.integers(1, 6))
    stages = tuple(
        Stage(draw(st.sampled_from(BLOCKS)), draw(st.integers(1, 4096)), draw(st.integers(1, 8192)),
              draw(st.sampled_from([1, 3, 5, 7, 9])), draw(st.sampled_from([1, 2])), draw(st.integers(1, 20)))
        for _ in range(n)
    )
    head = draw(st.one_of(st.none(), st.builds(Head, st.integers(1, 4096))))
    return Genotype(Stem(draw(st.integers(1, 256)), draw(st.sampled_from([1, 3, 5, 7])), draw(st.sampled_from([1, 2]))),
                    stages, head, image_size=draw(st.integers(2 ** 7 + 1, 640)), in_channels=draw(st.integers(1, 8)),
                    num_classes=draw(st.integers(1, 5000)))


@given(genotypes())
@settings(max_examples=150, deadline=None)
def test_text_json_round_trip(g):
    assert Genotype.from_text(g.to_text()) == g
    assert Genotype.from_json(g.to_json()) == g
    assert Genotype.from_json(Genotype.from_text(g.to_text()).to_json()) == g
    assert Genotype.from_tinynas(tinynas_literal(g), image_size=g.image_size, num_classes=g.num_classes) == g


TINYNAS_CLASS = {"basic": "SuperResKXKX", "bottleneck": "SuperResK1KXK1", "mbconv": "SuperResK1DWK1",
                 "mbconv_se": "SuperResK1DWSEK1"}


def tinynas_literal(g: Genotype) -> str:
    """The reference implementation's structure-file literal of ``g``, written independently of the reader."""
    blocks = [{"class": "ConvKXBNRELU", "in": g.in_channels, "k": g.stem.k, "out": g.stem.out, "s": g.stem.s}]
    c = g.stem.out
    for stage in g.stages:
        blocks.append({"L": stage.depth, "btn": stage.btn, "class": TINYNAS_CLASS[stage.block], "in": c,
                       "k": stage.k, "out": stage.out, "s": stage.s})
        c = stage.out
    if g.head is not None:
        blocks.append({"class": "ConvKXBNRELU", "in": c, "k": 1, "out": g.head.out, "s": 1})
    return repr({"best_structures": [blocks], "space_arch": "CnnNet"})


def test_text_form_is_compact_and_greppable():
    g = Genotype(Stem(32, 3, 2), (Stage("mbconv_se", 40, 240, 5, 2, 2),), Head(1792))
    assert g.to_text() == "i224_c3_n1000 stem_k3_s2_c32 mbse_d2_k5_s2_b240_c40 head_c1792"


def test_reads_published_r18(published):
    g = load_genotype(published / "deepmad-R18.txt")
    assert g.stem == Stem(32, 3, 2)
    assert [(s.out, s.btn, s.k, s.s, s.depth) for s in g.stages] == [
        (96, 40, 5, 2, 1), (384, 40, 5, 2, 6), (384, 64, 5, 2, 9), (1024, 104, 3, 1, 10), (672, 104, 5, 2, 12)]
    assert set(g.blocks) == {"bottleneck"} and g.head is None


def test_reads_published_29m(published):
    g = load_genotype(published / "deepmad-29M-224.txt")
    assert g.head == Head(1792) and g.stages[0].s == 1 and g.stages[2].out == 134
    assert set(g.blocks) == {"mbconv_se"}


def test_load_paths_and_text(tmp_path):
    g = Genotype(Stem(16, 3, 2), (Stage("basic", 32, 16, 3, 2, 1), Stage("bottleneck", 64, 16, 5, 2, 3)))
    save_genotype(g, tmp_path / "g.json")
    assert load_genotype(tmp_path / "g.json") == g
    (tmp_path / "g.txt").write_text(g.to_text() + "\n")
    assert load_genotype(tmp_path / "g.txt") == g
    assert load_genotype(g.to_text()) == g
    assert load_genotype(g.to_text(), image_size=97).image_size == 97
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file


def _doc(**over):
    d = Genotype(Stem(32, 3, 2), (Stage("mbconv", 40, 240, 5, 2, 2), Stage("mbconv", 80, 480, 3, 2, 4)),
                 Head(1792)).to_dict()
    for path, value in over.items():
        target = d
        keys = path.split("__")
        for k in keys[:-1]:
            target = target[int(k)] if k.isdigit() else target[k]
        if value is KeyError:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return json.dumps(d)


@pytest.mark.parametrize("over, message", [
    ({"stages__1__k": 4}, "stages[1].k: expected an odd integer >= 1, got 4"),
    ({"stages__0__s": 3}, "stages[0].s: expected 1 or 2, got 3"),
    ({"stages__0__depth": 0}, "stages[0].depth: expected an integer >= 1, got 0"),
    ({"stages__0__out": 40.0}, "stages[0].out: expected an integer >= 1, got 40.0"),
    ({"stages__0__colour": 1}, "stages[0]: unknown key 'colour'"),
    ({"stages__0__btn": KeyError}, "stages[0].btn: missing"),
    ({"stem__k": 0}, "stem.k: expected an odd integer >= 1, got 0"),
    ({"format": "other/1"}, "format: expected 'deepmad-evo/genotype/1'"),
    ({"stages__0__block": "vit"}, "stages[0].block: expected one of basic, bottleneck, mbconv, mbconv_se, got 'vit'"),
    ({"image_size": 2}, "image_size: 2 is too small for the strides"),
    ({"extra": 1}, "genotype: unknown key 'extra'"),
])
def test_json_errors_name_the_field(over, message):
    with pytest.raises(GenotypeError) as err:
        Genotype.from_json(_doc(**over))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("i224_c3_n1000 stem_k3_s2_c32 mbse_d2_k4_s2_b240_c40", "stages[0].k: expected an odd integer >= 1, got 4"),
    ("i224_c3_n1000 stem_k3_s2_c32 vit_d2_k3_s2_b240_c40", "unknown token 'vit_d2_k3_s2_b240_c40'"),
    ("i224_c3_n1000 stem_k3_s2_c32 mb_d2_k3_s2_b240_c40_x1", "bad field 'x1'"),
    ("i224_c3_n1000 stem_k3_s2_c32 mb_d2_k3_s2_b240", "missing field 'c'"),
    ("i224_c3_n1000 stem_k3_s2_c32 mb_d2_d3_k3_s2_b240_c40", "field 'd' given twice"),
    ("i224_c3_n1000 stem_k3_s2_c32 head_c10 mb_d2_k3_s2_b240_c40", "the head must come last"),
])
def test_text_errors(text, message):
    with pytest.raises(GenotypeError) as err:
        Genotype.from_text(text)
    assert message in str(err.value)


def test_tinynas_reader_is_literal_only(tmp_path):
    evil = tmp_path / "evil.txt"
    evil.write_text("{'best_structures': [[__import__('os').system('echo hacked')]]}")
    with pytest.raises(GenotypeError, match="not a Python literal"):
        load_genotype(evil)


def test_tinynas_reader_rejects_unknown_class():
    text = "[{'class': 'ConvKXBNRELU', 'in': 3, 'k': 3, 'out': 32, 's': 2}, {'class': 'SuperFoo', 'out': 8}]"
    with pytest.raises(GenotypeError, match=r"best_structures\[0\]\[1\].class: expected one of"):
        Genotype.from_tinynas(text)


def test_unreadable_source():
    with pytest.raises(GenotypeError, match="neither a readable file nor a genotype text form"):
        load_genotype("/no/such/file.json")
