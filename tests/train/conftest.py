import pytest
import torch
from train_helpers import make_toy_store


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def toy_store(tmp_path):
    return make_toy_store(tmp_path / "toy.zarr")


@pytest.fixture
def unimodal_store(tmp_path):
    return make_toy_store(tmp_path / "toy_uni.zarr", bimodal=False)


@pytest.fixture
def toy_image_store(tmp_path):
    return make_toy_store(tmp_path / "toy_img.zarr", n_episodes=4, image=True)
