"""torch.hub entry points: ``torch.hub.load(repo_dir, "deepmad_r50", source="local")``.

One entry point per zoo network (``deepmad_<zoo name>`` with ``-`` → ``_``, the published
``deepmad-r50-published`` as ``deepmad_r50_published``: the names of ``deepmad_evo.timm``)
and ``deepmad(genotype, ...)`` for any genotype (file, text form or zoo name). Keyword arguments go to
``deepmad_evo.build_model`` (``num_classes``, ``features_only``, ``out_indices``, ``drop_path_rate``,
``in_chans``, ``weights=`` a weights folder written by training). No weights are downloaded: the zoo
networks are architectures; trained weights load from a local ``model.safetensors`` folder.
"""

dependencies = ["torch", "torchvision", "numpy", "pymoo"]

from deepmad_evo.models import get_genotype as _get_genotype  # noqa: E402
from deepmad_evo.models import list_models as _list_models  # noqa: E402
from deepmad_evo.models import resolve_genotype as _resolve_genotype  # noqa: E402


def deepmad(genotype, **kwargs):
    """Any genotype (a file, the text form or a zoo name) as an ``nn.Module``; kwargs go to ``build_model``."""
    from deepmad_evo.model import build_model

    return build_model(genotype if not isinstance(genotype, str) else _resolve_genotype(genotype), **kwargs)


def _entry(zoo):
    def entry(**kwargs):
        from deepmad_evo.model import build_model

        return build_model(_get_genotype(zoo), **kwargs)

    # As deepmad_evo.timm.timm_name (not imported: timm is optional): deepmad-r50-published -> deepmad_r50_published.
    name = zoo[len("deepmad-"):] if zoo.startswith("deepmad-") else zoo
    entry.__name__ = "deepmad_" + name.replace("-", "_").replace(".", "_")
    entry.__doc__ = f"The zoo network {zoo!r}: {_get_genotype(zoo).to_text()}; kwargs go to build_model."
    return entry


for _zoo in _list_models():
    _fn = _entry(_zoo)
    globals()[_fn.__name__] = _fn
del _zoo, _fn
