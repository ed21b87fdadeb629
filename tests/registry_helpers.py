"""Helpers shared by the registry's tests: a small logged model, exact error checks."""

from __future__ import annotations

import numpy as np
import pytest

import strata
from strata.client import Client
from strata.core.errors import StrataError


def exactly(cls: type[StrataError], fn: object, *args: object, **kw: object) -> StrataError:
    """Call ``fn`` and return the error, checking its class is exactly ``cls``."""
    assert callable(fn)
    with pytest.raises(StrataError) as info:
        fn(*args, **kw)
    assert type(info.value) is cls, f"expected {cls.__name__}, got {info.value!r}"
    return info.value


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    return x, (x[:, 0] + 0.3 * x[:, 1] > 0).astype(int)


def log_run(client: Client, *, c: float = 1.0, path: str = "model", acc: float = 0.9) -> str:
    """A run of ``client`` with a logistic regression logged at ``path``; its id."""
    from sklearn.linear_model import LogisticRegression

    x, y = data()
    with strata.start_run(experiment="reg", client=client, capture_environment=False) as run:
        strata.log_metric("acc", acc)
        strata.log_model(LogisticRegression(C=c).fit(x, y), path, input_example=x[:5])
    return run.run_id
