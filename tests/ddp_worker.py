"""Run under ``torchrun --nproc_per_node 2``: train the toy MLP with DDP and save this rank's final weights."""

import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from crossguide.modalities.toy.mlp import MLPDenoiser
from crossguide.trainer import TrainConfig, train
from tests.helpers import SCHEDULE, toy_data

if __name__ == "__main__":
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    data = toy_data()
    torch.manual_seed(0)
    model = MLPDenoiser(data.attributes, hidden=32, depth=2)
    config = TrainConfig(steps=int(sys.argv[2]), batch_size=64, lr=1e-3, warmup=5, device="cpu")
    result = train(model, SCHEDULE, data, config, out=out / "ckpt", progress=False)
    save_file(result.model.state_dict(), out / f"rank{os.environ['RANK']}.safetensors")
