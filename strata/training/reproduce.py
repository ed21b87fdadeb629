"""``strata runs reproduce``: run a training job again from what its run recorded.

The run's config (tag ``strata.training.config``), its exact input version (tag
``strata.training.data``), its seed (in the config) and its code commit (tags
``strata.training.git_commit`` / ``git_dirty``, read from the working directory when the job
ran) are enough to run it again. Reproducing refuses, before anything runs, when:

- the run is not a training job (no recorded config);
- the source run's code was dirty, or the working directory's code is dirty now, or it is at
  another commit (check out the recorded one first): uncommitted code cannot be reproduced;
- the input version no longer resolves.

The new run is tagged ``strata.training.reproduces = SOURCE_RUN_ID``. ``deltas`` are new minus
old for every ``train_``/``test_``/``cv_`` metric of the source run; ``identical`` is true
when all are exactly zero (deterministic families: LightGBM runs single-threaded with
``deterministic=True``; XGBoost ``hist`` single-threaded; seeded scikit-learn).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from strata.core.errors import Conflict, InvalidInput, NotFound
from strata.training.evaluate import Services, default_services
from strata.training.models import ReproduceResult, TrainConfig, config_error

TAG_GIT_COMMIT = "strata.training.git_commit"
TAG_GIT_DIRTY = "strata.training.git_dirty"
TAG_REPRODUCES = "strata.training.reproduces"
_PREFIXES = ("train_", "test_", "cv_")


def code_state(path: Path | None = None) -> dict[str, str]:
    """``{"commit", "dirty"}`` of the git work tree at ``path`` (default: the working
    directory); empty outside a work tree."""
    from strata.tracking.capture import git_info

    info = git_info(path or Path.cwd())
    return {k: info[k] for k in ("commit", "dirty") if k in info}


def reproduce(
    run_id: str, *, client: Services | None = None, code_path: Path | None = None
) -> ReproduceResult:
    """Re-run the training job of ``run_id`` (see the module docstring); raises NotFound
    (unknown run, input version gone), Conflict (dirty or different code), InvalidInput (not
    a training run)."""
    from strata.training.job import TAG_CONFIG, TAG_DATA, train

    services = client or default_services()
    source = services.tracking.get_run(run_id)
    tags = source.tags
    raw = tags.get(TAG_CONFIG)
    if raw is None:
        raise InvalidInput(
            f"Run {run_id} is not a training job (no {TAG_CONFIG} tag); only runs of "
            "strata train can be reproduced",
            details={"run_id": run_id},
        )
    try:
        cfg = TrainConfig.model_validate_json(raw)
    except ValidationError as exc:
        raise config_error(exc) from None
    recorded = tags.get(TAG_GIT_COMMIT)
    if not recorded:
        raise Conflict(
            f"Run {run_id} recorded no code commit (it ran outside a git work tree); its code "
            "cannot be checked out again",
            details={"run_id": run_id},
        )
    if tags.get(TAG_GIT_DIRTY) == "true":
        raise Conflict(
            f"Run {run_id} ran on uncommitted changes over {recorded[:12]}; that code is not "
            "recorded anywhere, so the run cannot be reproduced",
            details={"run_id": run_id, "commit": recorded},
        )
    now = code_state(code_path)
    if now.get("dirty") != "false":
        raise Conflict(
            "The code here has uncommitted changes (or is not a git work tree); commit or "
            f"stash them, check out {recorded[:12]} and run again",
            details={"run_id": run_id, "commit": recorded, "current": now.get("commit")},
        )
    if now.get("commit") != recorded:
        raise Conflict(
            f"Run {run_id} ran at commit {recorded[:12]}, the code here is at "
            f"{str(now.get('commit'))[:12]}; git checkout {recorded} and run again",
            details={"run_id": run_id, "commit": recorded, "current": now.get("commit")},
        )
    ref = tags.get(TAG_DATA) or cfg.data
    try:
        services.data.get_version(ref)
    except NotFound:
        raise NotFound(
            f"Run {run_id} trained on {ref}, which no longer exists; the run cannot be "
            "reproduced without its input version",
            details={"run_id": run_id, "data": ref},
        ) from None
    again = cfg.model_copy(update={"data": ref, "run_name": f"reproduce-{run_id[:8]}"})
    result = train(again, client=services, tags={TAG_REPRODUCES: run_id})
    old = {k: v for k, v in source.metrics.items() if k.startswith(_PREFIXES)}
    new = services.tracking.get_run(result.run_id).metrics  # per-fold keys too
    deltas = {k: new[k] - v for k, v in sorted(old.items()) if k in new}
    missing = sorted(set(old) - set(new))
    identical = not missing and all(d == 0.0 for d in deltas.values())
    return ReproduceResult(
        run_id=result.run_id, source_run_id=run_id, deltas=deltas, identical=identical
    )
