"""deepmad_evo: design CNNs by maximising the DeepMAD entropy under budgets, on CPU, in seconds."""

from __future__ import annotations

from .genotype import Genotype, GenotypeError, Head, Stage, Stem, load_genotype, save_genotype
from .objective import Evaluation, evaluate, evaluate_population
from .units import expand

__version__ = "0.1.0"

__all__ = ["Genotype", "GenotypeError", "Head", "Stage", "Stem", "load_genotype", "save_genotype", "Evaluation",
           "evaluate", "evaluate_population", "expand", "__version__"]

# Torch-dependent names load on first use so that `import deepmad_evo` stays torch-free.
_LAZY = {"build_model": "deepmad_evo.model", "load_model": "deepmad_evo.model", "models": "deepmad_evo.models"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        return module if name == "models" else getattr(module, name)
    raise AttributeError(f"module 'deepmad_evo' has no attribute {name!r}")
