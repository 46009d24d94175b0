"""The one config vocabulary: every checker names the field, the expectation and the value."""

import pytest

from deepmad_evo.schema import ConfigError, boolean, choice, integer, number, read_toml, sequence, take


@pytest.mark.parametrize("check, value, message", [
    (integer(), True, "f: expected an integer, got True"),
    (integer(1), 0, "f: expected an integer >= 1, got 0"),
    (number(), "3", "f: expected a number, got '3'"),
    (number(0.0, 1.0, open_low=True), 0, "f: expected a number > 0 and <= 1, got 0"),
    (number(0.0), float("nan"), "f: expected a number >= 0, got nan"),
    (boolean, 1, "f: expected true or false, got 1"),
    (choice(("a", "b")), "c", "f: expected one of a, b, got 'c'"),
    (sequence(integer(), 2), [1], "f: expected a list of 2 values, got [1]"),
    (sequence(number(), 3, "a list of 3 numbers (one per RGB channel)"), [1, 2], "f: expected a list of 3 numbers"),
])
def test_checkers_reject_with_one_clear_line(check, value, message):
    with pytest.raises(ConfigError) as err:
        check(value, "f")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_checkers_convert_what_they_accept():
    assert number()(3, "f") == 3.0 and isinstance(number()(3, "f"), float)
    assert sequence(integer())([1, 2], "f") == (1, 2)


def test_take_refuses_unknown_keys_and_read_toml_lists_presets(tmp_path):
    with pytest.raises(ConfigError, match=r"^x.toml: unknown key t.b; expected one of a$"):
        take({"a": 1, "b": 2}, "t", {"a": integer()}, "x.toml")
    (tmp_path / "one.toml").write_text("a = 1\n")
    assert read_toml("one", tmp_path, "preset")[1] == {"a": 1}
    with pytest.raises(ConfigError, match=r"^--config: 'two' is neither a file nor a preset; presets: one$"):
        read_toml("two", tmp_path, "preset")
    (tmp_path / "bad.toml").write_text("a = \n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        read_toml(tmp_path / "bad.toml", tmp_path, "preset")
