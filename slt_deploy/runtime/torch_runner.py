"""The PyTorch reference as a Runner: a checkpoint folder evaluated by slt_deploy itself (eager)."""
from __future__ import annotations

import numpy as np
import torch

from ..backends import Runner
from ..checkpoint import load


class TorchRunner(Runner):
    def __init__(self, ckpt_dir: str):
        self.model, m = load(ckpt_dir)
        r = m["recipe"]
        self.meta = {"input_shape": m["input"]["shape"], "input_max": m["input"]["range"][1], "T": m["T"],
                     "encoding": m["encoding"], "labels": m["labels"], "dt": m["dt"], "name": r["name"]}

    @torch.no_grad()
    def run(self, seq):
        logits = self.model.run(torch.as_tensor(np.asarray(seq, dtype=np.float32)))
        return {"logits": logits.numpy()}
