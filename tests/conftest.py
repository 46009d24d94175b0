"""Shared fixtures: paths to the published reference structures."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO.parent / "shared" / "published"


@pytest.fixture
def published():
    if not PUBLISHED.is_dir():
        pytest.skip(f"published structures not found at {PUBLISHED}")
    return PUBLISHED


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks on a shared 2-core machine: extra intra-op threads only contend."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
