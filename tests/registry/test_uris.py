"""``models:/`` loads download into ``$STRATA_HOME/tmp/model-*`` and leave nothing behind."""

from __future__ import annotations

import gc

from registry_helpers import data, log_run

import strata.models as sm
from strata.client import Client
from strata.models.store import clear_cache


def test_models_uri_download_is_removed_with_the_model() -> None:
    with Client() as client:
        client.registry.register("clean", log_run(client))
        client.registry.set_alias("clean", "canary", 1)
        tmp = client.settings.home / "tmp"
        clear_cache()  # log_model's own load is cached: this load must download
        model = sm.load("models:/clean@canary", tracking=client.tracking)
        held = list(tmp.glob("model-*"))
        assert len(held) == 1 and model.path.is_relative_to(held[0])
        x, _ = data()
        assert len(model.predict(x[:3])) == 3
        del model
        clear_cache()  # the digest cache holds loaded models (and so their files) too
        gc.collect()
        assert not list(tmp.glob("model-*"))
        again = sm.load("models:/clean/1", tracking=client.tracking)
        assert len(again.predict(x[:2])) == 2
        del again
        clear_cache()
        gc.collect()
        assert not list(tmp.glob("model-*"))
