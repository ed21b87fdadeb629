"""Holdout splits and cross-validation folds, all seeded.

- ``random``: shuffled; ``stratified``: class shares kept (classification only);
- ``time``: rows ordered by ``split.column``, the latest ``test_size`` share is the test set
  (no future row trains a model tested on the past); CV uses expanding-window folds;
- ``group``: no value of ``split.column`` is on both sides (GroupShuffleSplit / GroupKFold).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from strata.core.errors import InvalidInput
from strata.training.dataset import JobData
from strata.training.models import SplitConfig, SplitMethod, Task


def holdout(data: JobData, split: SplitConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indexes of ``data``."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    n = len(data.y)
    idx = np.arange(n)
    if n < 4:
        raise InvalidInput(f"{n} rows are too few to split", details={"field": "split"})
    if split.method is SplitMethod.TIME:
        order = np.argsort(data.frame[split.column].to_numpy(), kind="stable")
        cut = n - max(1, round(n * split.test_size))
        return np.sort(order[:cut]), np.sort(order[cut:])
    if split.method is SplitMethod.GROUP:
        groups = data.frame[split.column].astype(str).to_numpy()
        if len(np.unique(groups)) < 2:
            raise InvalidInput(
                f"split.column {split.column!r} has one group; a group split needs two or more",
                details={"field": "split.column"},
            )
        gss = GroupShuffleSplit(n_splits=1, test_size=split.test_size, random_state=seed)
        train, test = next(gss.split(idx, groups=groups))
        return np.sort(train), np.sort(test)
    stratify = None
    if split.method is SplitMethod.STRATIFIED:
        if data.task is not Task.CLASSIFICATION:
            raise InvalidInput(
                "split.method 'stratified' needs a classification task",
                details={"field": "split.method"},
            )
        stratify = data.y
    train, test = train_test_split(
        idx, test_size=split.test_size, random_state=seed, shuffle=True, stratify=stratify
    )
    return np.sort(train), np.sort(test)


def folds(
    data: JobData, rows: np.ndarray, split: SplitConfig, k: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, validation) index pairs over ``rows`` (indexes into ``data``), following
    the split method: time → TimeSeriesSplit on time order, group → GroupKFold,
    stratified/classification → StratifiedKFold, else KFold; shuffled and seeded."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold, TimeSeriesSplit

    if len(rows) < 2 * k:
        raise InvalidInput(
            f"cv.folds={k} needs at least {2 * k} training rows, there are {len(rows)}",
            details={"field": "cv.folds"},
        )
    if split.method is SplitMethod.TIME:
        order = rows[np.argsort(data.frame[split.column].to_numpy()[rows], kind="stable")]
        for tr, va in TimeSeriesSplit(n_splits=k).split(order):
            yield order[tr], order[va]
        return
    if split.method is SplitMethod.GROUP:
        groups = data.frame[split.column].astype(str).to_numpy()[rows]
        for tr, va in GroupKFold(n_splits=k).split(rows, groups=groups):
            yield rows[tr], rows[va]
        return
    splitter: KFold | StratifiedKFold
    if data.task is Task.CLASSIFICATION:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    for tr, va in splitter.split(rows, data.y[rows]):
        yield rows[tr], rows[va]
