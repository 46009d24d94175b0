"""timm integration: ``import deepmad_evo.timm`` registers every zoo network and a genotype factory with timm.

After the import, ``timm.create_model("deepmad_r50", num_classes=10, in_chans=1, drop_path_rate=0.1,
features_only=True, out_indices=(1, 2, 3))`` builds through timm's own ``build_model_with_cfg``, so
timm's feature wrappers (``FeatureListNet``, ``FeatureGraphNet``, ``feature_cls="getter"``),
``pretrained=True`` with ``pretrained_cfg_overlay=dict(file=...)`` (a ``model.safetensors``),
``resolve_data_config`` / ``create_transform`` and ``timm.create_model("local-dir:DIR")`` on a
weights folder written by training all work. Names: ``deepmad_<zoo name>`` with ``-`` → ``_``
(``deepmad_mb_29m``; the published networks ``deepmad-r50-published`` → ``deepmad_r50_published``); ``deepmad`` takes any genotype
(``genotype=`` a file, text form or zoo name). Needs the ``timm`` extra.
"""

from __future__ import annotations

import os
from typing import Any

try:
    import timm as _timm
    from timm.models import build_model_with_cfg, register_model
except ImportError:
    raise ImportError("deepmad_evo.timm needs timm; install the extra: pip install 'deepmad-evo[timm]'") from None

from .genotype import Genotype
from .model import DeepMADNet, as_genotype, build_model, pretrained_cfg
from .models import get_genotype, list_models, resolve_genotype

# register_model reads the default pretrained cfg of each entry point from its module's ``default_cfgs``.
default_cfgs: dict[str, dict[str, Any]] = {}
__all__: list[str] = []

# timm passes these to the model class; everything else goes to build_model as is.
_TIMM_ONLY = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def timm_name(zoo_name: str) -> str:
    """The timm model name of a zoo entry: ``r50`` → ``deepmad_r50``, ``mb-29m`` → ``deepmad_mb_29m``,
    ``deepmad-r50-published`` → ``deepmad_r50_published`` (hubconf.py names its entry points the same way)."""
    name = zoo_name[len("deepmad-"):] if zoo_name.startswith("deepmad-") else zoo_name
    return "deepmad_" + name.replace("-", "_").replace(".", "_")


def _timm_cfg(genotype: Genotype) -> dict[str, Any]:
    cfg = pretrained_cfg(genotype)
    cfg.update(url="", license="apache-2.0", input_size=tuple(cfg["input_size"]))
    return cfg


def _build(variant: str, genotype: Genotype, pretrained: bool = False, **kwargs) -> DeepMADNet:
    # build_model_with_cfg fills num_classes / in_chans / global_pool from the pretrained cfg, pops
    # features_only and out_indices and wraps the full network in the feature class it is given.
    return build_model_with_cfg(
        lambda **kw: build_model(genotype, **kw), variant, pretrained,
        feature_cfg=dict(flatten_sequential=True, out_indices=tuple(range(genotype_segments(genotype)))),
        **kwargs)


def genotype_segments(genotype: Genotype) -> int:
    from .units import expand

    return expand(genotype).num_segments


def deepmad(pretrained: bool = False, genotype: str | os.PathLike | Genotype | None = None, **kwargs) -> DeepMADNet:
    """Any genotype as a timm model: ``timm.create_model("deepmad", genotype="runs/…/genotype.json")``.

    ``genotype`` is a ``Genotype``, a file, a text form or a zoo name. Weights folders written by
    training name this entry point in their config.json, so ``timm.create_model("local-dir:DIR")`` works.
    """
    if genotype is None:
        raise ValueError("genotype: timm model 'deepmad' needs genotype=<file, text form or zoo name>")
    g = genotype if isinstance(genotype, Genotype) else resolve_genotype(str(genotype))
    kwargs.pop("pretrained_model_args", None)
    cfg = kwargs.pop("pretrained_cfg", None) or {}
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    # The genotype fixes the input size and the default preprocessing; a loaded config.json overrides them.
    own = _timm_cfg(g)
    own.update({k: v for k, v in cfg.items() if v is not None})
    own["architecture"] = "deepmad"
    return _build("deepmad", g, pretrained, pretrained_cfg=own, **kwargs)


def _entry_point(zoo: str):
    name = timm_name(zoo)

    def create(pretrained: bool = False, **kwargs) -> DeepMADNet:
        return _build(name, get_genotype(zoo), pretrained, **kwargs)

    create.__name__ = create.__qualname__ = name
    create.__module__ = __name__
    create.__doc__ = f"The zoo network {zoo!r} ({get_genotype(zoo).to_text()})."
    return create


def register() -> list[str]:
    """Register ``deepmad`` and one ``deepmad_<name>`` per zoo entry with timm (idempotent); returns the names."""
    names = ["deepmad"]
    if "deepmad" not in _timm.list_models("deepmad"):
        default_cfgs["deepmad"] = {"url": "", "license": "apache-2.0"}
        register_model(deepmad)
    for zoo in list_models():
        name = timm_name(zoo)
        names.append(name)
        if name in _timm.list_models(name):
            continue
        fn = _entry_point(zoo)
        globals()[name] = fn
        default_cfgs[name] = _timm_cfg(get_genotype(zoo))
        register_model(fn)
    return names


__all__ += ["deepmad", "register", "timm_name", "as_genotype"]
MODEL_NAMES = register()
