"""The package ships what it needs: subpackages, presets, recipes, zoo and published data, declared dependencies."""

from __future__ import annotations

import ast
import fnmatch
import re
import sys
import tomllib
from pathlib import Path

from deepmad_evo.resources import preset_dir, published_dir, recipe_dir, zoo_dir

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def test_every_subpackage_is_listed_for_the_wheel():
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "deepmad_evo").rglob("__init__.py")}
    listed = set(SETUPTOOLS["packages"])
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == {"deepmad_evo.presets", "deepmad_evo.presets.train"}
    assert SETUPTOOLS["package-dir"] == {"deepmad_evo.presets": "configs"}


def test_package_data_covers_every_shipped_file():
    root = REPO / "deepmad_evo"
    data = [p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    globs = SETUPTOOLS["package-data"]["deepmad_evo"]
    assert data, "the zoo is missing"
    assert [f for f in data if not any(fnmatch.fnmatch(f, g) for g in globs)] == []
    for sub, folder in (("deepmad_evo.presets", REPO / "configs"), ("deepmad_evo.presets.train", REPO / "configs" / "train")):
        assert SETUPTOOLS["package-data"][sub] == ["*.toml"]
        assert [p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".toml"] == []


def test_resources_resolve_in_a_source_checkout():
    assert preset_dir() == REPO / "configs"
    assert {"mb-29m.toml", "r50.toml", "tiny.toml"} <= {p.name for p in preset_dir().glob("*.toml")}
    assert {"imagenet.toml", "smoke.toml"} <= {p.name for p in recipe_dir().glob("*.toml")}
    assert (zoo_dir() / "index.json").is_file() and (published_dir() / "README.md").is_file()


def _declared() -> set[str]:
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("-", "_") for r in reqs}


def test_every_third_party_import_is_declared():
    stdlib = set(sys.stdlib_module_names)
    imported = set()
    for path in (REPO / "deepmad_evo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - stdlib - {"deepmad_evo"}
    # PIL arrives with torchvision, which declares it.
    # Import names that differ from the distribution's name.
    distribution = {"sklearn": "scikit_learn"}
    missing = {m for m in third_party if distribution.get(m, m).lower() not in _declared()} - {"PIL"}
    assert missing == set(), f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_dev_extra_pulls_in_the_onnx_extra_and_all_collects_every_extra():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert "deepmad-evo[onnx]" in extras["dev"]
    assert {"onnx", "onnxscript", "onnxruntime"} <= {re.split(r"[<>=]", r)[0] for r in extras["onnx"]}
    others = set(extras) - {"all", "dev"}
    assert {f"deepmad-evo[{e}]" for e in others} <= set(extras["all"])


# A path into the sibling shared folder (written with a character class so this guard does not match itself).
OUTSIDE = re.compile(r"\.\.[/]shared|\bshared/(published|DESIGN)")


def test_nothing_reads_or_links_outside_the_repository():
    offenders = []
    for folder in ("deepmad_evo", "tests", "benchmarks", "docs"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".md", ".toml", ".json", ".txt") and path.is_file():
                if OUTSIDE.search(path.read_text()):
                    offenders.append(str(path.relative_to(REPO)))
    if OUTSIDE.search((REPO / "README.md").read_text()):
        offenders.append("README.md")
    assert offenders == []
