"""Fuzzing the readers: any input gives a valid object or one ValueError naming the field, nothing else."""

from __future__ import annotations

import argparse
import json
import math
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepmad_evo import io, limits
from deepmad_evo.config import ConfigError, load_config, parse_quantity
from deepmad_evo.genotype import Genotype, GenotypeError, load_genotype

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text built from the genotype form's own alphabet reaches far deeper into the parser than random text.
TOKENS = st.sampled_from(["i", "c", "n", "stem", "mb", "mbse", "bneck", "basic", "head", "d", "k", "s", "b",
                          "_", " ", "0", "1", "2", "3", "7", "16", "32", "64", "224", "²", "٣", "-", "00",
                          "99999999999", "x"])
GENOTYPE_TEXT = st.lists(TOKENS, max_size=40).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["format", "stem", "stages", "head", "out", "k", "s", "btn", "block", "depth", "image_size",
                         "in_channels", "num_classes", "x"]), children, max_size=6),
    max_leaves=30)


def _one_line_value_error(exc: BaseException, kinds=(ValueError,)) -> None:
    assert isinstance(exc, kinds), f"{type(exc).__name__}: {exc}"
    text = str(exc)
    assert text and "\n" not in text.strip() and len(text) < 600, text


@FUZZ
@given(st.one_of(st.text(max_size=200), GENOTYPE_TEXT))
def test_text_form_reader(text):
    _round_trip(Genotype.from_text, text)


@FUZZ
@given(JSON_VALUES)
def test_json_reader_on_structures(value):
    _round_trip(Genotype.from_dict, value)


def _round_trip(read, value) -> None:
    """``read(value)`` is one line of GenotypeError, or a genotype that every form reproduces exactly."""
    try:
        g = read(value)
    except GenotypeError as exc:
        _one_line_value_error(exc)
        return
    assert Genotype.from_text(g.to_text()) == g
    assert Genotype.from_dict(json.loads(g.to_json())) == g
    assert Genotype.from_json(g.to_json()) == g


@FUZZ
@given(st.one_of(st.text(max_size=300), JSON_VALUES.map(json.dumps),
                 st.integers(1, 500).map(lambda n: "[" * n + "]" * n)))
def test_json_and_structure_file_readers_on_text(text):
    for read in (Genotype.from_json, Genotype.from_tinynas):
        try:
            read(text)
        except GenotypeError as exc:
            _one_line_value_error(exc)


@FUZZ
@given(st.binary(max_size=300))
def test_load_genotype_on_any_file(tmp_path_factory, data):
    _read_file(tmp_path_factory, "genotype.json", data, load_genotype, GenotypeError)


def _read_file(tmp_path_factory, name: str, data: bytes, read, error) -> None:
    """``read`` a file holding ``data``: a result or one line of ``error``."""
    path = tmp_path_factory.mktemp("f") / name
    path.write_bytes(data)
    try:
        read(path)
    except error as exc:
        _one_line_value_error(exc)


@FUZZ
@given(st.one_of(st.text(max_size=40), st.text(alphabet="0123456789.eE+-kKmMgGtT nainf", max_size=20),
                 st.floats(), st.integers(-2**80, 2**80), st.booleans(), st.none()))
def test_budget_parser(value):
    try:
        v = parse_quantity(value, "--budget")
    except ConfigError as exc:
        _one_line_value_error(exc)
        assert str(exc).startswith("--budget: ")
        return
    assert isinstance(v, float) and math.isfinite(v) and v > 0


@FUZZ
@given(st.text(max_size=30))
def test_number_flags(text):
    for parse in (limits.arg_float, limits.arg_seed, limits.arg_image_side):
        try:
            v = parse(text)
        except argparse.ArgumentTypeError as exc:
            assert str(exc).startswith("expected ")
            continue
        assert math.isfinite(v)
        if parse is not limits.arg_float:
            assert isinstance(v, int) and v >= 0


@FUZZ
@given(st.one_of(st.text(max_size=200), JSON_VALUES.map(json.dumps)))
def test_strict_json_reader(text):
    try:
        value = io.loads_json(text, "state")
    except limits.LimitError as exc:
        _one_line_value_error(exc)
        assert str(exc).startswith("state: ")
        return
    assert json.loads(io.dumps_json(value)) == value


@FUZZ
@given(st.one_of(st.text(alphabet=string.printable, max_size=200),
                 st.lists(st.sampled_from(["[template]\n", "[space]\n", "[search]\n", "blocks = [\"mb\"]\n",
                                           "strides = [2]\n", "channels = [8, 2000000000, 1]\n", "pop_size = 1e11\n",
                                           "expansion = [1.5, 6.0, 0.0]\n", "alpha = [nan]\n", "seed = -1\n",
                                           "depth = [1, 99999]\n", "image_size = 0\n", "x = 1\n"]),
                          max_size=8).map("".join)))
def test_config_reader(tmp_path_factory, text):
    _read_file(tmp_path_factory, "c.toml", text.encode(), load_config, ConfigError)


def test_nesting_depth_skips_strings():
    assert io.nesting_depth('{"a": "[[[[", "b": [1, [2]]}') == 3
    assert io.nesting_depth("{'a': '((((', 'b': (1, [2])}", python=True) == 3
    with pytest.raises(limits.LimitError, match=r"^x: nested 65 levels deep; expected at most 64$"):
        io.check_depth("[" * 65 + "]" * 65, "x")
