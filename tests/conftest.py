"""Shared test set-up: a private cache directory and few threads, so tests never touch the user's cache."""

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["CROSSGUIDE_CACHE"] = str(tmp_path_factory.mktemp("cache"))


torch.set_num_threads(min(2, torch.get_num_threads()))
