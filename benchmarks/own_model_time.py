"""How long book/own_model.md's example takes: ``own.attack`` with its defaults (every attack of the
registry's ``own`` defaults on the ``cpu`` profile's grids) on a diffusers UNet of about 0.65M
parameters at 16x16 and 100 + 100 images, on this machine. The page quotes this run's minutes.

    PYTHONPATH=. .venv/bin/python benchmarks/own_model_time.py [--members 100] [--out /tmp/own.json]

The weights are untrained (the time does not depend on them) and the images are the digits
upscaled to 16x16; the attacks' cost is their model evaluations, which depend only on the sizes.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from diffusers import DDPMScheduler, UNet2DModel
from sklearn.datasets import load_digits

from miakit import own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(32, 64),
                        layers_per_block=1, down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2,
                        norm_num_groups=8)
    params = sum(p.numel() for p in model.parameters())
    digits = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 8 - 1
    images = torch.nn.functional.interpolate(digits, size=16, mode="bilinear").clamp(-1, 1)
    n = args.members
    family = own.family_from_scheduler(DDPMScheduler(num_train_timesteps=1000))
    began = time.perf_counter()
    result = own.attack(model, family, images[:n], images[n:2 * n])
    seconds = time.perf_counter() - began
    report = {"parameters": params, "members": n, "nonmembers": n, "resolution": 16, "seconds": round(seconds, 1),
              "threads": torch.get_num_threads(), "attacks": list(result.studies)}
    print(result)
    print(json.dumps(report))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
