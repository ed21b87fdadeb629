"""``strata.autolog()`` for user-written PyTorch loops: params, the loss and the model, with
no extra code in the loop.

What is hooked (all undone by ``autolog(disable=True)``):

- ``torch.nn.Module.parameters``: remembers the last few modules whose parameters were
  asked for — ``Adam(model.parameters(), ...)`` — so an optimizer is tied to its model (the
  smallest remembered module holding all of the optimizer's parameters);
- ``torch.Tensor.backward``: the value of a scalar loss being backpropagated;
- a global optimizer step post-hook (``register_optimizer_step_post_hook``): each step counts,
  and every ``every`` steps the mean loss since the last point is logged as ``train_loss``
  (step = optimizer steps). On an optimizer's first step the params are logged:
  ``optimizer`` (class), its hyperparameters (``lr``, ``momentum``, ``betas``,
  ``weight_decay`` ...), ``model`` (class), ``model_parameters`` (count) and ``loss``
  (the autograd node of the loss, e.g. ``NllLossBackward0``); a forward pre-hook keeps the
  model's first input rows as the input example.

Inside an active run everything goes into that run, and the model is logged (TorchScript,
``strata.log_model``) when the run ends. Outside any run a run named after the model class is
created but not made active (so the user's own ``start_run`` still works); its points are
written directly and it ends, with the model logged, at exit. Logging never breaks the loop:
a failure is a warning.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
import weakref
from typing import Any

_log = logging.getLogger("strata.autolog")
_lock = threading.Lock()
_local = threading.local()
_recent: list[weakref.ReferenceType[Any]] = []
_loops: dict[int, _Loop] = {}
_undo: list[Any] = []
_options: dict[str, Any] = {"log_models": True, "every": 10}
_RECENT = 8


class _Loop:
    """One optimizer's loop: its run, model, step count and the losses not yet logged."""

    def __init__(self, optimizer: Any, model: Any) -> None:
        from strata.tracking import fluent

        self.model_ref = weakref.ref(model) if model is not None else None
        self.steps = 0
        self.losses: list[float] = []
        self.example: Any = None
        self.logged_model = False
        active = fluent.active_run()
        if active is not None:
            self.tracking = active.tracking
            self.run_id = active.run_id
            self.owned = False
        else:
            from strata.tracking import fluent_services
            from strata.tracking.models import DEFAULT_EXPERIMENT_ID

            self.tracking = fluent_services.default_tracking()
            name = type(model).__name__ if model is not None else type(optimizer).__name__
            self.run_id = self.tracking.create_run(
                DEFAULT_EXPERIMENT_ID, run_name=name, tags={"strata.autolog.framework": "pytorch"}
            ).info.run_id
            self.owned = True
        if model is not None:
            handle = model.register_forward_pre_hook(self._keep_example)
            self._example_hook = handle

    def _keep_example(self, module: Any, args: Any) -> None:
        self._example_hook.remove()
        first = args[0] if args else None
        if first is not None and hasattr(first, "detach"):
            self.example = first[:5].detach().cpu().numpy().copy()

    def params(self, optimizer: Any, loss_node: str | None) -> dict[str, str]:
        model = self.model_ref() if self.model_ref else None
        out = {"optimizer": type(optimizer).__name__}
        group = optimizer.param_groups[0] if optimizer.param_groups else {}
        for key, value in group.items():
            if key != "params" and isinstance(value, (int, float, str, bool, tuple)):
                out[key] = str(value)
        if model is not None:
            out["model"] = type(model).__name__
            out["model_parameters"] = str(sum(p.numel() for p in model.parameters()))
        if loss_node:
            out["loss"] = loss_node
        return out

    def write(self, metrics: dict[str, float] | None = None, params: Any = None) -> None:
        from strata.tracking import fluent
        from strata.tracking.models import Metric, Param

        active = fluent.active_run()
        if not self.owned and active is not None and active.run_id == self.run_id:
            if params:
                known = self.tracking.get_run(self.run_id).params
                fluent.log_params({k: v for k, v in params.items() if k not in known})
            if metrics:
                fluent.log_metrics(metrics, step=self.steps)
            return
        now = int(time.time() * 1000)
        self.tracking.log_batch(
            self.run_id,
            metrics=[Metric(k, v, now, self.steps) for k, v in (metrics or {}).items()],
            params=[Param(k, v) for k, v in (params or {}).items()],
        )

    def flush(self) -> None:
        if self.losses:
            self.write({"train_loss": sum(self.losses) / len(self.losses)})
            self.losses = []

    def log_model(self) -> None:
        model = self.model_ref() if self.model_ref else None
        if self.logged_model or model is None or not _options["log_models"]:
            return
        import strata.models as sm

        self.logged_model = True
        was_training = model.training
        try:
            sm.log_model(model.eval(), "model", input_example=self.example)
        finally:
            model.train(was_training)


def _owner(optimizer: Any) -> Any:
    ids = {id(p) for group in optimizer.param_groups for p in group["params"]}
    best = None
    for ref in _recent:
        module = ref()
        if module is None:
            continue
        mine = {id(p) for p in module.parameters()}
        if ids <= mine and (best is None or len(mine) < best[0]):
            best = (len(mine), module)
    return best[1] if best else None


def _after_step(optimizer: Any, args: Any, kwargs: Any) -> None:
    if getattr(_local, "busy", False):
        return
    _local.busy = True
    try:
        loss = getattr(_local, "loss", None)
        _local.loss = None
        with _lock:
            loop = _loops.get(id(optimizer))
            first = loop is None
            if loop is None:
                loop = _loops[id(optimizer)] = _Loop(optimizer, _owner(optimizer))
        loop.steps += 1
        if loss is not None:
            loop.losses.append(loss[0])
        if first:
            loop.write(params=loop.params(optimizer, loss[1] if loss else None))
        if loop.steps % int(_options["every"]) == 0:
            loop.flush()
    except Exception as exc:  # never break the user's loop
        _log.warning("strata.autolog: could not log a PyTorch step: %s", exc)
    finally:
        _local.busy = False


def _on_run_end(run: Any, status: str) -> None:
    for key, loop in list(_loops.items()):
        if loop.run_id != run.run_id or loop.owned:
            continue
        try:
            loop.flush()
            if status == "FINISHED":
                loop.log_model()
        except Exception as exc:
            _log.warning("strata.autolog: could not log the PyTorch model: %s", exc)
        _loops.pop(key, None)


def _at_exit() -> None:
    from strata.tracking import fluent
    from strata.tracking.models import RunStatus

    for key, loop in list(_loops.items()):
        if not loop.owned:
            continue
        try:
            loop.flush()
            if _options["log_models"]:
                with fluent.start_run(run_id=loop.run_id, client=loop.tracking, nested=True):
                    loop.log_model()
            else:
                loop.tracking.end_run(loop.run_id, RunStatus.FINISHED)
        except Exception as exc:
            _log.warning("strata.autolog: could not end the PyTorch run: %s", exc)
        _loops.pop(key, None)


def enable(*, log_models: bool, every: int) -> None:
    """Install the hooks (idempotent); see the module docstring."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from strata.tracking import fluent

    _options.update(log_models=log_models, every=max(1, int(every)))
    if _undo:
        return
    orig_parameters = torch.nn.Module.parameters
    orig_backward = torch.Tensor.backward

    @functools.wraps(orig_parameters)
    def parameters(self: Any, recurse: bool = True) -> Any:
        if not getattr(_local, "busy", False) and not any(r() is self for r in _recent):
            _recent.append(weakref.ref(self))
            del _recent[:-_RECENT]
        return orig_parameters(self, recurse)

    @functools.wraps(orig_backward)
    def backward(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.numel() == 1:
            node = type(self.grad_fn).__name__ if self.grad_fn is not None else None
            _local.loss = (float(self.detach()), node)
        return orig_backward(self, *args, **kwargs)  # type: ignore[no-untyped-call]

    torch.nn.Module.parameters = parameters  # type: ignore[method-assign]
    torch.Tensor.backward = backward  # type: ignore[method-assign]
    handle = register_optimizer_step_post_hook(_after_step)
    fluent.on_end(_on_run_end)
    atexit.register(_at_exit)

    def undo() -> None:
        torch.nn.Module.parameters = orig_parameters  # type: ignore[method-assign]
        torch.Tensor.backward = orig_backward  # type: ignore[method-assign]
        handle.remove()
        fluent.remove_on_end(_on_run_end)
        atexit.unregister(_at_exit)

    _undo.append(undo)


def disable() -> None:
    _at_exit()
    while _undo:
        _undo.pop()()
    _loops.clear()
    _recent.clear()
