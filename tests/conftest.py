"""Shared fixtures: the published reference structures (shipped with the package) and thread limits."""

from pathlib import Path

import pytest

from deepmad_evo.resources import published_dir


@pytest.fixture
def published() -> Path:
    """The authors' published DeepMAD structure files, as shipped in the package (never skipped)."""
    return published_dir()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks on a shared 2-core machine: extra intra-op threads only contend."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
