"""Which model a scoring job or a deployment uses: ``MODEL_REF`` parsed, pinned, fetched.

A ``MODEL_REF`` is one of:

- ``NAME@ALIAS`` (``flights@production``), ``NAME/VERSION`` (``flights/3``) or a bare
  ``NAME`` (its latest version) — a registered model, the same spellings ``strata serve``
  takes; ``models:/...`` URIs are accepted as they are;
- ``runs:/RUN_ID/PATH`` — a model logged by a run;
- a local model directory (holding ``strata-model.yaml``).

An alias is resolved once, to the version it points at now (:class:`PinnedModel`), so a job
that resumes after a crash scores with the same version even if the alias moved since — or
knows it must start over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from strata.core.errors import InvalidInput

if TYPE_CHECKING:
    from strata.data.service import DataService
    from strata.models.models import ModelSpec
    from strata.registry.models import ModelVersion
    from strata.registry.service import RegistryService
    from strata.tracking.service import TrackingService

#: A bare ``NAME`` or ``NAME/latest`` (the server's parser takes ``NAME@ALIAS``, ``NAME/N``).
_BARE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-]{0,127})(?:/(latest))?/?$")
FORMS = "NAME@ALIAS, NAME/VERSION, NAME, runs:/RUN_ID/PATH or a model directory"


class Services(Protocol):
    """What scoring needs from a :class:`strata.Client`."""

    @property
    def tracking(self) -> TrackingService: ...

    @property
    def data(self) -> DataService: ...

    @property
    def registry(self) -> RegistryService: ...


def default_services() -> Services:
    """``strata.Client()`` for the current settings (remote when ``STRATA_URI`` is set)."""
    from strata.tracking.fluent_services import default_client

    return default_client()


@dataclass(frozen=True)
class PinnedModel:
    """A model ref resolved to exactly one model: what to load and what to record.

    ``uri`` loads exactly this model again (``models:/NAME/VERSION``, ``runs:/...`` or the
    directory); ``name``/``version`` are the registered model's (None for a run or a
    directory); ``run_id`` is the run that logged it (when known); ``digest`` is the sha256
    of its ``strata-model.yaml``, which lists every file's.
    """

    ref: str
    uri: str
    path: Path
    spec: ModelSpec
    digest: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    model_id: str | None = None
    flavors: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """For people and lineage: ``flights v3 (@production)``, or the URI."""
        if self.name is None:
            return self.uri
        alias = f" (@{self.alias})" if self.alias else ""
        return f"{self.name} v{self.version}{alias}"

    def record(self) -> dict[str, str | None]:
        """What an output records about the model (JSON-able)."""
        return {
            "ref": self.ref,
            "uri": self.uri,
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "model_id": self.model_id,
            "digest": self.digest,
            "flavor": self.spec.flavor,
        }


def parse_ref(ref: str) -> tuple[str, str | None, str | None] | None:
    """``(name, alias, version)`` of a registered-model ref (version may be ``latest``);
    None when ``ref`` is a ``runs:/`` URI or a model directory. Registered and run refs are
    read by the server's own parser (:func:`strata.serving.models.parse_ref`), plus a bare
    ``NAME`` (its latest version); InvalidInput names the accepted forms otherwise."""
    from strata.serving.models import parse_ref as parse_served

    text = ref.strip()
    if not text or any(ord(c) < 32 for c in text):
        raise InvalidInput(
            f"Model ref {ref!r} is empty or holds control characters; expected {FORMS}",
            details={"field": "model"},
        )
    if text.startswith(("./", "/", "~")) or (":/" not in text and Path(text).is_dir()):
        if not Path(text).expanduser().is_dir():
            raise InvalidInput(
                f"Model ref {ref!r} is not a model directory; expected {FORMS}",
                details={"field": "model"},
            )
        return None
    bare = _BARE.match(text.removeprefix("models:/"))
    if bare is not None:
        return bare.group(1), None, bare.group(2) or "latest"
    try:
        parsed = parse_served(text)
    except InvalidInput:
        raise InvalidInput(
            f"Model ref {ref!r} is not one of: {FORMS}", details={"field": "model"}
        ) from None
    if parsed.run_id is not None:
        return None
    if getattr(parsed, "directory", None) is not None:  # a path the server would open
        raise InvalidInput(
            f"Model ref {ref!r} is not a model directory; expected {FORMS}",
            details={"field": "model"},
        )
    return parsed.name, parsed.alias, parsed.version


def registered_version(services: Services, ref: str) -> ModelVersion:
    """The registered model version ``ref`` (``NAME@ALIAS``, ``NAME/VERSION``, ``NAME``)
    names, without downloading it: InvalidInput for another form, NotFound for an unknown
    model, version or alias."""
    from strata.registry.uris import version_for

    parsed = parse_ref(ref)
    if parsed is None:
        raise InvalidInput(
            f"Model ref {ref!r} is not a registered model (NAME@ALIAS, NAME/VERSION or NAME)",
            details={"field": "model"},
        )
    name, alias, wanted = parsed
    return version_for(
        services.registry, f"models:/{name}@{alias}" if alias else f"models:/{name}/{wanted}"
    )


def pin(services: Services, ref: str) -> PinnedModel:
    """Resolve ``ref`` to one model version and its verified local directory (downloaded).

    Raises InvalidInput for a malformed ref, NotFound for an unknown model, version, alias or
    run, Conflict for a registered version that is not ready, DigestMismatch when the files
    changed since they were logged or registered."""
    from strata.models.store import read_spec, verify
    from strata.models.tracked import resolve

    parsed = parse_ref(ref)
    name = alias = version = run_id = model_id = None
    if parsed is not None:
        name, alias, _ = parsed
        mv = registered_version(services, ref)
        version, run_id, model_id = str(mv.version), mv.run_id, mv.model_id
        uri = f"models:/{mv.name}/{mv.version}"
    else:
        text = ref.strip()
        uri = text if text.startswith("runs:/") else str(Path(text).expanduser().resolve())
        if text.startswith("runs:/"):
            run_id = text.removeprefix("runs:/").split("/", 1)[0]
    path = resolve(uri, services.tracking)
    spec, digest = read_spec(path)
    verify(path, spec)
    return PinnedModel(
        ref=ref,
        uri=uri,
        path=path,
        spec=spec,
        digest=digest,
        name=name,
        version=version,
        alias=alias,
        run_id=run_id or spec.run_id,
        model_id=model_id,
        flavors=list(spec.flavors),
    )
