"""``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` and ``models:/NAME/latest`` for
:func:`strata.models.load`: the models layer imports this module for the ``models`` scheme
on first use and calls :func:`resolve_uri`.

The version is looked up in the registry of the Client the tracking service belongs to (or
``strata.Client()``); its files are downloaded from where tracking stored them and the
manifest is checked against the sha256 pinned at registration before the model store
verifies every file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from strata.core.errors import InvalidInput
from strata.registry import sources
from strata.registry.models import ModelVersion
from strata.tracking.service import TrackingService

if TYPE_CHECKING:
    from strata.registry.service import RegistryService

_URI = re.compile(r"^models:/([^/@]+)(?:@([^/@]+)|/([^/@]+))/?$")


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``(name, alias, version)`` of a ``models:/`` URI (version may be ``latest``)."""
    m = _URI.match(uri.strip())
    if m is None:
        raise InvalidInput(
            f"Model URI {uri!r} must look like models:/NAME@ALIAS, models:/NAME/VERSION or "
            "models:/NAME/latest",
            details={"field": "uri"},
        )
    return m.group(1), m.group(2), m.group(3)


def version_for(registry: RegistryService, uri: str) -> ModelVersion:
    """The registered version a ``models:/`` URI names (NotFound naming what is missing)."""
    name, alias, version = parse_models_uri(uri)
    if alias is not None:
        return registry.get_version_by_alias(name, alias)
    if version == "latest":
        model = registry.get_model(name)
        if model.latest_version is None:
            from strata.core.errors import NotFound

            raise NotFound(f"Model {name!r} has no versions yet", details={"name": name})
        return registry.get_version(name, model.latest_version)
    return registry.get_version(name, str(version))


def resolve_uri(uri: str, tracking: TrackingService | None) -> Path:
    """The local directory of the registered model at ``uri`` (downloaded, manifest checked
    against the pinned sha256)."""
    from strata.tracking.fluent_services import client_of, default_client

    client = client_of(tracking) if tracking is not None else None
    if client is None:
        client = default_client()
    service = tracking if tracking is not None else client.tracking
    mv = version_for(client.registry, uri)
    if mv.status.value != "ready":
        from strata.core.errors import Conflict

        raise Conflict(
            f"{uri} is version {mv.version} of {mv.name!r}, which is {mv.status.value}: "
            f"{mv.status_message or 'not ready to load'}",
            details={"name": mv.name, "version": mv.version, "status": mv.status.value},
        )
    # Downloaded into a private ``$STRATA_HOME/tmp/model-*`` directory that the models layer
    # removes with the loaded model (or at once when loading fails), as for ``runs:/``; the
    # sweep of ``strata gc`` and of the next download takes those of killed processes.
    import shutil

    from strata.core.staging import make_workdir
    from strata.models import tracked

    work = make_workdir(client.settings.home / "tmp", "model-")
    try:
        local = sources.fetch(
            service,
            run_id=mv.run_id if mv.artifact_path else None,
            artifact_path=mv.artifact_path,
            model_id=mv.model_id,
            digest=mv.digest,
            what=f"{uri} (version {mv.version} of {mv.name!r})",
            dst=Path(work),
        )
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    with tracked._owned_lock:
        tracked._owned[local] = work
    return local
