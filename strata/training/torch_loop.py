"""The PyTorch training loop of the ``pytorch`` and ``text`` families: mini-batches, early
stopping on a held-out share of the training rows, checkpoints every N optimizer steps, and
resumption from the last checkpoint after the process was killed.

Resuming gives the same result as never stopping: a checkpoint holds the module's and the
optimizer's state, the global RNG state (dropout), the position inside the epoch (the epoch's
shuffle is drawn from a generator seeded by ``seed`` and the epoch, so it is drawn again
identically), the running loss of the epoch and the early-stopping state. With one torch
thread (``torch.set_num_threads(1)``) a resumed fit is bit-for-bit the uninterrupted one.

Checkpoints are bytes written through a :class:`Checkpointer` (the job's: artifacts of the
run, through the tracking interface) and read back with ``torch.load(weights_only=True)``:
tensors, numbers, strings and containers only, never pickled objects, so a checkpoint in the
artifact store cannot run code when it is read. Torch is imported inside the functions.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class Checkpointer(Protocol):
    """Where a fit keeps its checkpoints and reports its per-epoch losses."""

    def load(self) -> bytes | None:
        """The last checkpoint saved by this fit (None: start from scratch)."""

    def save(self, data: bytes, step: int) -> None:
        """Keep ``data`` as the last checkpoint (replacing the previous one whole)."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record this epoch's losses (``step`` = epoch)."""


@dataclass(frozen=True)
class LoopSettings:
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 5
    """Epochs without a validation improvement larger than ``min_delta`` before stopping."""
    min_delta: float = 0.0
    validation_fraction: float = 0.1
    checkpoint_every: int = 100
    """Optimizer steps between checkpoints (0: none)."""
    seed: int = 0
    threads: int = 1
    """Torch threads during the fit (restored after): one thread is deterministic."""


@dataclass
class LoopResult:
    state: dict[str, Any]
    """The best module weights (lowest validation loss), as tensors."""
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    steps: int = 0
    resumed_from_step: int | None = None


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * fraction) if fraction > 0 else 0
    n_val = min(max(n_val, 1 if fraction > 0 and n > 1 else 0), n - 1)
    return order[n_val:], order[:n_val]


def _to_bytes(torch: Any, ckpt: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue()


def _from_bytes(torch: Any, data: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    return loaded


def _clone_state(module: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def fit_module(
    module: Any,
    X: np.ndarray,
    y: np.ndarray,
    loss_fn: Any,
    settings: LoopSettings,
    checkpointer: Checkpointer | None = None,
) -> LoopResult:
    """Train ``module`` on ``X`` (float32 rows) and ``y`` (class indices or float targets)
    with Adam, minimizing ``loss_fn``; the module ends holding its best weights.

    With a ``checkpointer`` holding a checkpoint of this fit, the fit continues from it (a
    finished fit's checkpoint restores the result without training)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, settings.threads))
    try:
        return _fit(torch, module, X, y, loss_fn, settings, checkpointer)
    finally:
        torch.set_num_threads(threads)


def _fit(
    torch: Any,
    module: Any,
    X: np.ndarray,
    y: np.ndarray,
    loss_fn: Any,
    settings: LoopSettings,
    checkpointer: Checkpointer | None,
) -> LoopResult:
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    yt = torch.from_numpy(np.ascontiguousarray(y))
    train_rows, val_rows = _split(len(Xt), settings.validation_fraction, settings.seed)
    tr_idx = torch.from_numpy(train_rows)
    Xv, yv = Xt[torch.from_numpy(val_rows)], yt[torch.from_numpy(val_rows)]
    optimizer = torch.optim.Adam(
        module.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    per_epoch = max(1, math.ceil(len(train_rows) / settings.batch_size))
    pos = {"epoch": 0, "batch": 0, "step": 0, "loss_sum": 0.0, "loss_rows": 0}
    best = {"val": math.inf, "epoch": -1, "bad": 0}
    result = LoopResult(state=_clone_state(module))
    ckpt = _from_bytes(torch, data) if checkpointer and (data := checkpointer.load()) else None
    if ckpt is not None:
        module.load_state_dict(ckpt["module"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"])
        pos = dict(ckpt["pos"])
        best = dict(ckpt["best"])
        result = LoopResult(
            state=ckpt["best_state"],
            train_loss=list(ckpt["train_loss"]),
            val_loss=list(ckpt["val_loss"]),
            best_epoch=int(best["epoch"]),
            stopped_early=bool(ckpt["stopped_early"]),
            steps=int(pos["step"]),
            resumed_from_step=int(pos["step"]),
        )
        if ckpt["done"]:
            module.load_state_dict(result.state)
            return result

    def checkpoint(done: bool) -> None:
        if checkpointer is None:
            return
        checkpointer.save(
            _to_bytes(
                torch,
                {
                    "module": module.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": torch.get_rng_state(),
                    "pos": pos,
                    "best": best,
                    "best_state": result.state,
                    "train_loss": result.train_loss,
                    "val_loss": result.val_loss,
                    "stopped_early": result.stopped_early,
                    "done": done,
                },
            ),
            int(pos["step"]),
        )

    while pos["epoch"] < settings.epochs and not result.stopped_early:
        module.train()
        gen = torch.Generator().manual_seed(settings.seed * 1_000_003 + int(pos["epoch"]))
        order = tr_idx[torch.randperm(len(tr_idx), generator=gen)]
        while pos["batch"] < per_epoch:
            start = pos["batch"] * settings.batch_size
            rows = order[start : start + settings.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(module(Xt[rows]), yt[rows])
            loss.backward()
            optimizer.step()
            pos["batch"] += 1
            pos["step"] += 1
            pos["loss_sum"] += float(loss.detach()) * len(rows)
            pos["loss_rows"] += len(rows)
            if settings.checkpoint_every and pos["step"] % settings.checkpoint_every == 0:
                checkpoint(done=False)
        train_loss = pos["loss_sum"] / max(1, pos["loss_rows"])
        module.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(module(Xv), yv)) if len(Xv) else train_loss
        epoch = int(pos["epoch"])
        result.train_loss.append(train_loss)
        result.val_loss.append(val_loss)
        if checkpointer is not None:
            checkpointer.log({"train_loss": train_loss, "val_loss": val_loss}, epoch)
        if val_loss < best["val"] - settings.min_delta:
            best.update(val=val_loss, epoch=epoch, bad=0)
            result.state = _clone_state(module)
            result.best_epoch = epoch
        else:
            best["bad"] += 1
            result.stopped_early = best["bad"] >= settings.patience
        pos.update(epoch=epoch + 1, batch=0, loss_sum=0.0, loss_rows=0)
    result.steps = int(pos["step"])
    module.load_state_dict(result.state)
    checkpoint(done=True)
    return result
