"""Surrogate-gradient training and evaluation. Runs on one process, or data-parallel under `torchrun`
(torch.distributed DDP: gloo on CPU, NCCL on GPUs). Batch-norm statistics are all-reduced across processes
(nn.layers.synced_batch_norm), so 2 processes compute what 1 would, up to float summation order."""
from __future__ import annotations

import atexit
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import log as _log
from .nn import precision, synapses


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def is_main() -> bool:
    """True on the process that writes files (rank 0, or the only process)."""
    dist = _dist()
    return dist is None or dist.get_rank() == 0


_EXIT_BARRIER: list = []  # the exit barrier's work object, referenced until the interpreter clears this module


def _shutdown_distributed():
    """At exit: wait for every rank (rank 0 still evaluates and writes files after the others are done), then
    destroy the group. The barrier's work object stays referenced here: the gloo worker thread that completes it then
    never drops its last reference, so its destructor (which needs the GIL, see exit_distributed) runs in the main
    thread when the interpreter clears this module, not in a worker thread racing the interpreter's finalization."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            work = dist.barrier(async_op=True)
            _EXIT_BARRIER.append(work)
            work.wait()
        except RuntimeError:  # another rank failed (DistBackendError is one): torchrun reports it; just leave
            pass
        dist.destroy_process_group()


def exit_distributed(code: int):
    """End a torchrun worker: meet the other ranks, destroy the group, flush, and leave with os._exit(code), i.e.
    WITHOUT the interpreter's finalization. Why (seen 2 times in ~270 torchrun runs of test_ddp under load; gdb on the
    core): a gloo worker thread destroys the barrier's work object just after the main thread has returned from the
    barrier; that object holds a Python reference (captured thread-local state), so its destructor needs the GIL;
    if the main thread is already finalizing, Python ends the GIL-waiting thread with pthread_exit, whose unwinding
    through a C++ destructor is std::terminate ("terminate called without an active exception", SIGABRT). Every
    file is written and closed (atomically renamed) before this point. A failing rank (code != 0) does not wait at
    the barrier for ranks that may be inside a collective: it leaves, and torchrun stops the others. No-op without a
    process group."""
    import logging
    import sys

    if _dist() is None:
        return
    if code == 0:
        _shutdown_distributed()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code)


def init_distributed():
    """Start the process group when launched by torchrun (WORLD_SIZE > 1). Returns (rank, world)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        # the CLI ends a worker with exit_distributed; for library callers the group is destroyed at exit
        atexit.register(_shutdown_distributed)
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def set_threads(cfg: dict) -> int:
    """torch threads for training: the recipe's `train.threads`, else $SLT_THREADS, else 1. One thread is the
    default because on this 2-core machine shared with other jobs two intra-op threads made a training step 3-6x
    SLOWER (bench/train_fmnist.py --throughput), and one thread makes results independent of the core count."""
    n = int(cfg.get("threads") or os.environ.get("SLT_THREADS") or 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def make_optimizer(params, cfg):
    name = cfg.get("optimizer", "adam").lower()
    lr, wd = float(cfg.get("lr", 1e-3)), float(cfg.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(cfg.get("momentum", 0.9)), weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r} (adam, adamw, sgd)")


def make_schedule(opt, cfg, total_steps):
    kind = cfg.get("schedule", "cosine")
    if kind == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps)
                                                                                      / max(1, total_steps))))
    if kind in ("none", "constant", None):
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    raise ValueError(f"unknown schedule {kind!r} (cosine, constant)")


def apply_masks(model):
    for _, m in synapses(model):
        m.apply_mask_()


@torch.no_grad()
def mask_optimizer_state(opt, model):
    """Zero the optimizer state (Adam's moments, SGD's momentum) of every pruned weight, so a pruned weight can
    never come back through momentum or weight decay and a later unmasking starts from a clean state. Only for
    layers that are pruned (mask not all ones)."""
    for _, m in synapses(model):
        if m.scores is not None or bool(m.mask.all()):
            continue
        st = opt.state.get(m.weight)
        if not st:
            continue
        for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer"):
            v = st.get(k)
            if isinstance(v, torch.Tensor) and v.shape == m.mask.shape:
                v.mul_(m.mask)


@torch.no_grad()
def _check_batch_norm_batch(model, bs: int, world: int):
    """Batch norm in training mode needs more than one value per channel: a batch of 1 per process (batch_size 1, or
    fewer samples than 2 per torchrun process) would stop training with torch's ValueError at its first step."""
    from torch.nn.modules.batchnorm import _BatchNorm

    if bs // world < 2 and any(isinstance(m, _BatchNorm) for m in model.modules()):
        from .errors import SltError

        per = f"{bs // world} sample(s) per process ({world} processes)" if world > 1 else f"{bs} sample per batch"
        raise SltError(f"train.batch_size {bs} gives {per}; the model's batch norm layers need at least 2",
                       f"set train.batch_size to {2 * world} or more in the recipe")


_WARNED_SLOW = set()  # precisions already warned about in this process (an IMP search trains once per round)


def _check_precision(cfg: dict) -> str:
    """The training precision of cfg ("fp32" unless train.precision says "bf16"; nn/precision.py); warns once when
    this CPU has no native bfloat16 kernels."""
    prec = str(cfg.get("precision", "fp32"))
    try:
        precision.dtype_of(prec)
    except ValueError as e:
        from .errors import SltError

        raise SltError(f"train.precision: {e}", f"use one of {', '.join(precision.PRECISIONS)}") from None
    if prec not in _WARNED_SLOW and not precision.fast(prec):
        _WARNED_SLOW.add(prec)
        _log.log.warning(f"training precision {prec}: this CPU has no native bfloat16 kernels (AVX512-BF16 / AMX), "
                         "so training may be slower than fp32; pass --precision fp32")
    return prec


def predict_logits(model, x, batch_size=512) -> torch.Tensor:
    """Eval-mode logits / T (the distillation teacher's targets) for every image of x, in order."""
    was = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]) / model.T
    model.train(was)
    return out


def kd_loss(student_logits, teacher_logits, y, alpha: float, temp: float):
    """Hinton et al.: (1 - alpha) CE(student, y) + alpha temp^2 KL(softmax(teacher/temp) || softmax(student/temp))."""
    ce = F.cross_entropy(student_logits, y)
    kl = F.kl_div(F.log_softmax(student_logits / temp, 1), F.log_softmax(teacher_logits / temp, 1),
                  reduction="batchmean", log_target=True)
    return (1.0 - alpha) * ce + alpha * temp * temp * kl


@torch.no_grad()
def evaluate(model, split, batch_size=256, generator_seed=1234) -> float:
    """Top-1 accuracy (%) of `model` on a data Split."""
    was = model.training
    model.eval()
    g = torch.Generator().manual_seed(generator_seed)
    correct = 0
    for i in range(0, len(split.x), batch_size):
        logits = model(split.x[i:i + batch_size], generator=g)
        correct += (logits.argmax(1) == split.y[i:i + batch_size]).sum().item()
    model.train(was)
    return 100.0 * correct / max(1, len(split.x))


def train(model, data, cfg: dict, epochs: int | None = None, progress=True, on_epoch=None, seed=0,
          start_epoch: int = 0, teacher=None, keep: dict | None = None, on_step=None):
    """Train `model` on data.train; returns history [{epoch, loss, train_acc, val_acc, seconds}].
    `on_epoch(epoch, model)` runs after every epoch (ticket searches hook in here: rewind points, EB masks);
    returning True stops training after that epoch. `on_step(epoch, step, steps, model)` runs after every optimizer
    step (0-based epoch, step 1..steps, steps per epoch; Early-Bird's sub-epoch masks); returning True stops training
    there.
    `start_epoch` k: run epochs k+1..epochs of the schedule (learning-rate rewinding: the learning rate and the
    data order are those the full run has at those epochs).
    `teacher`: (logits / T of every training image [N, classes], alpha, temp): knowledge distillation (kd_loss);
    None = plain cross-entropy, the same computation as without the option.
    `keep`: a dict that receives the optimizer and the scheduler (tests, resumable searches).
    After every step the masks are re-applied to the weights and to the optimizer state."""
    rank, world = init_distributed()
    set_threads(cfg)
    dist = _dist()
    epochs = int(cfg.get("epochs", 1) if epochs is None else epochs)
    bs = int(cfg.get("batch_size", 64))
    _check_batch_norm_batch(model, bs, world)
    prec = _check_precision(cfg)
    n = len(data.train.x)
    steps_per_epoch = max(1, n // bs)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg)
    sched = make_schedule(opt, cfg, epochs * steps_per_epoch)
    if start_epoch:  # LR rewinding: the schedule where the full run has it (no optimizer step yet: warning)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(int(start_epoch) * steps_per_epoch):
                sched.step()
    if keep is not None:
        keep.update(optimizer=opt, scheduler=sched)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if dist is not None else model
    g = torch.Generator().manual_seed(seed + 17 + rank)
    history = []
    apply_masks(model)
    for ep in range(int(start_epoch), epochs):
        model.train()
        t0 = time.time()
        perm = torch.from_numpy(np.random.default_rng(seed + ep).permutation(n))
        tot_loss, tot_ok, tot_n = 0.0, 0, 0
        it = range(steps_per_epoch)
        bar = _log.progress(it, desc=f"epoch {ep + 1}/{epochs}", enabled=bool(progress) and rank == 0)
        stop = False
        for s in bar:
            idx = perm[s * bs:(s + 1) * bs][rank::world]  # same global batch as 1 process, split across ranks
            x, y = data.train.x[idx], data.train.y[idx]
            with precision.compute(prec):
                logits = ddp(x, generator=g)
            if teacher is None:
                loss = F.cross_entropy(logits / model.T, y)
            else:
                loss = kd_loss(logits / model.T, teacher[0][idx], y, float(teacher[1]), float(teacher[2]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            apply_masks(model)
            mask_optimizer_state(opt, model)
            tot_loss += loss.item() * len(y)
            tot_ok += (logits.argmax(1) == y).sum().item()
            tot_n += len(y)
            bar.set_postfix(loss=f"{tot_loss / tot_n:.3f}", acc=f"{100 * tot_ok / tot_n:.1f}")
            if on_step is not None and on_step(ep, s + 1, steps_per_epoch, model) is True:
                stop = True
                break
        rec = {"epoch": ep + 1, "loss": tot_loss / max(1, tot_n), "train_acc": 100.0 * tot_ok / max(1, tot_n),
               "seconds": time.time() - t0}
        if rank == 0 and len(data.val.x):
            rec["val_acc"] = evaluate(model, data.val)
        history.append(rec)
        if progress and rank == 0:
            msg = f"epoch {ep + 1}/{epochs}: loss {rec['loss']:.3f} train {rec['train_acc']:.1f}%"
            if "val_acc" in rec:
                msg += f" val {rec['val_acc']:.1f}%"
            _log.info(msg + f" ({rec['seconds']:.1f}s)")
        if stop:
            break  # on_step asked to stop (Early-Bird search with sub-epoch masks): no on_epoch for the partial epoch
        if on_epoch is not None and on_epoch(ep + 1, model) is True:
            break  # the callback asked to stop (Early-Bird search, rewind-point replay)
    return history
