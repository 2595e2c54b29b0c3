"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real test data folder ``../shared/data`` (next to the repository); skips the test when absent."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip("../shared/data absent")
    return path


@pytest.fixture(scope="session")
def cord_phantom(tmp_path_factory) -> dict:
    """One default 5-contrast cord phantom subject (BIDS), generated once per test session.

    Returns the truth dict of :func:`~nnunet_spine.phantoms.cord_dataset.write_cord_dataset`, whose
    ``root`` is the dataset folder. Tests must not modify it.
    """
    from nnunet_spine.phantoms.cord_dataset import write_cord_dataset

    return write_cord_dataset(tmp_path_factory.mktemp("cord_phantom") / "bids", n_subjects=1, seed=0)


@pytest.fixture(scope="session")
def trained_models() -> dict:
    """Models trained by slow e2e tests of this session, by name, for later slow tests (``segment spine`` needs
    the semantic model of ``test_spine_pipeline.py`` and the cutout model of ``test_vertebra_cutout_training.py``;
    pytest runs those files in that order)."""
    return {}
