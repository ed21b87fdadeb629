"""Distributed data-parallel training of the ``pytorch`` family on CPU: Ray Train's
``TorchTrainer`` with the gloo backend, ``workers`` processes on the Ray cluster ``ray.init``
finds (a local one by default).

Every worker builds the same module from the same seed, holds out the same validation rows
and draws the same per-epoch shuffle as the single-process loop
(:mod:`strata.training.torch_loop`); of each global batch of ``batch_size`` rows, worker ``r``
takes rows ``r, r + workers, ...``. DDP averages the workers' gradients, so each step follows
the gradient of the whole batch: with equal shares (an even batch) and no dropout the result
is the single-process one up to float rounding (``tests/training/test_torch_ddp.py``: test
metrics within 1e-3). Early stopping reads the validation loss, which every worker computes
on the same rows, so all stop at the same epoch. Worker 0 returns the best weights through a
Ray checkpoint directory (``torch.save`` of tensors; read back with ``weights_only=True``).
Checkpoint/resume of a killed job is the single-process loop's; a distributed fit restarts.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from strata.training.torch_loop import LoopResult, LoopSettings, _split


def _worker(cfg: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch as rt
    import torch

    settings: LoopSettings = cfg["settings"]
    torch.set_num_threads(1)
    torch.manual_seed(settings.seed)
    module = cfg["build"]()
    model = rt.prepare_model(module)  # DistributedDataParallel over gloo on CPU
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    X = torch.from_numpy(cfg["X"])
    y = torch.from_numpy(cfg["y"])
    train_rows, val_rows = _split(len(X), settings.validation_fraction, settings.seed)
    tr_idx = torch.from_numpy(train_rows)
    Xv, yv = X[torch.from_numpy(val_rows)], y[torch.from_numpy(val_rows)]
    loss_fn = cfg["loss_fn"]
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    per_epoch = max(1, math.ceil(len(train_rows) / settings.batch_size))
    best_val, best_epoch, bad = math.inf, 0, 0
    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    train_losses: list[float] = []
    val_losses: list[float] = []
    stopped = False
    steps = 0
    for epoch in range(settings.epochs):
        model.train()
        gen = torch.Generator().manual_seed(settings.seed * 1_000_003 + epoch)
        order = tr_idx[torch.randperm(len(tr_idx), generator=gen)]
        total, rows_seen = 0.0, 0
        for b in range(per_epoch):
            rows = order[b * settings.batch_size : (b + 1) * settings.batch_size]
            mine = rows[rank::world]
            optimizer.zero_grad()
            loss = loss_fn(model(X[mine]), y[mine])
            loss.backward()
            optimizer.step()
            steps += 1
            total += float(loss.detach()) * len(mine)
            rows_seen += len(mine)
        module.eval()
        with torch.no_grad():
            val = float(loss_fn(module(Xv), yv)) if len(Xv) else total / max(1, rows_seen)
        train_losses.append(total / max(1, rows_seen))
        val_losses.append(val)
        if val < best_val - settings.min_delta:
            best_val, best_epoch, bad = val, epoch, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            bad += 1
            if bad >= settings.patience:
                stopped = True
                break
    metrics = {"best_epoch": best_epoch, "steps": steps, "stopped_early": stopped, "world": world}
    if rank == 0:
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(
                {"state": best_state, "train_loss": train_losses, "val_loss": val_losses},
                Path(tmp) / "result.pt",
            )
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)


def fit_module_ddp(
    build: Any,
    X: np.ndarray,
    y: np.ndarray,
    loss_fn: Any,
    settings: LoopSettings,
    workers: int,
) -> LoopResult:
    """Train the module ``build()`` returns with ``workers`` DDP processes (see the module
    docstring); the result holds worker 0's best weights."""
    import ray
    import torch
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="strata-ddp-") as storage:
        trainer = TorchTrainer(
            _worker,
            train_loop_config={
                "settings": settings,
                "build": build,
                "X": np.ascontiguousarray(X, dtype=np.float32),
                "y": np.ascontiguousarray(y),
                "loss_fn": loss_fn,
            },
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=False),
            run_config=RunConfig(storage_path=storage, name="strata-ddp"),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"the distributed fit returned no weights: {result.error}")
        with result.checkpoint.as_directory() as directory:
            doc = torch.load(Path(directory) / "result.pt", weights_only=True)
    metrics = result.metrics or {}
    if int(metrics.get("world", 0)) != workers:
        world = metrics.get("world")
        raise RuntimeError(f"the distributed fit ran on {world} workers, not {workers}")
    return LoopResult(
        state=doc["state"],
        train_loss=[float(v) for v in doc["train_loss"]],
        val_loss=[float(v) for v in doc["val_loss"]],
        best_epoch=int(metrics.get("best_epoch", 0)),
        stopped_early=bool(metrics.get("stopped_early", False)),
        steps=int(metrics.get("steps", 0)),
    )
