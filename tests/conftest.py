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
