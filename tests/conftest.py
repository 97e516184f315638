"""Fixtures shared by several test modules (opt in per module with ``pytestmark``)."""

from __future__ import annotations

import pytest


@pytest.fixture
def no_data_dir_env(monkeypatch):
    """Unset ``MINIDISC_DATA_DIR``, so data lookups see only the folders a test passes."""
    monkeypatch.delenv("MINIDISC_DATA_DIR", raising=False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run far faster on one thread than with intra-op threads on a busy CPU;
    the previous thread count is restored after the module."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
