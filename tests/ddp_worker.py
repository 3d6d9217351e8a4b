"""Run by test_train under torchrun: train a few steps with DDP, save this rank's weights."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from vinterp.config import ModelConfig, TrainConfig
from vinterp.train import train

data, out = sys.argv[1], Path(sys.argv[2])
torch.set_num_threads(1)
cfg = TrainConfig(data=data, out=str(out), crop=32, batch_size=1, max_steps=3, val_windows=1,
                  seed=5)
model_cfg = ModelConfig(netG="unet_32", ngf=8, ndf=8, n_layers_D=2)
res = train(model_cfg, cfg, progress=False)
# train() leaves the process group up; save each rank's parameters for comparison.
G, D = res.generator, res.discriminator
rank = dist.get_rank()
torch.save({"world": dist.get_world_size(),
            "G": {k: v.detach().clone() for k, v in G.named_parameters()},
            "D": {k: v.detach().clone() for k, v in D.named_parameters()}},
           out / f"rank{rank}.pt")
dist.destroy_process_group()
