"""Saving and loading model directories: atomic writes, verified reads, a digest cache.

``save`` builds the whole directory under a hidden temporary name beside the target and
renames it into place once ``strata-model.yaml`` is written, so the model appears whole or
not at all. ``load`` reads ``strata-model.yaml`` (format version first), then checks that
the directory holds exactly the files it lists with their sizes and sha256 before any flavor
reads a byte; loaded models are cached by the digest of the yaml, which covers every file.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from strata.core.errors import AlreadyExists, DigestMismatch, InvalidInput, NotFound
from strata.models.flavors import flavor_for, get_flavor
from strata.models.flavors.base import Flavor, Predictor, dist_version
from strata.models.model import Model, to_flavor_input, write_example
from strata.models.models import (
    EXAMPLE_FILE,
    FORMAT_VERSION,
    SPEC_FILE,
    FileDigest,
    ModelSpec,
    Signature,
)
from strata.models.signature import enforce, infer_signature, to_columns

_CACHE_SIZE = 32
_cache: OrderedDict[tuple[str, bool], Model] = OrderedDict()
_cache_lock = threading.Lock()
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def save(
    obj: Any,
    path: str | os.PathLike[str],
    *,
    input_example: Any = None,
    signature: Signature | None = None,
    trusted: bool = False,
    serialization: str | None = None,
    run_id: str | None = None,
    dataset_versions: Sequence[str] = (),
    flavor_options: Mapping[str, Any] | None = None,
) -> ModelSpec:
    """Save ``obj`` as a Strata model directory at ``path`` (which must not exist).

    The flavor follows the object's type. With an ``input_example`` the signature is
    inferred from it and the model's own prediction on it, unless ``signature`` is given
    (then the example is checked against it). ``serialization="pickle"``/``"joblib"``
    (scikit-learn only) needs ``trusted=True``. ``flavor_options`` are flavor-specific
    (PyTorch: ``init_kwargs`` of a ``state_dict`` save). Raises InvalidInput for an
    unsupported object or option, AlreadyExists when ``path`` exists; on any error nothing
    is left at ``path``.
    """
    dest = Path(path)
    if dest.exists():
        raise AlreadyExists(
            f"Cannot save the model to {dest}: it exists already; choose a new path",
            details={"path": str(dest)},
        )
    flavor = flavor_for(obj)
    options = dict(flavor_options or {})
    unknown = sorted(set(options) - set(flavor.option_names))
    if unknown:
        accepted = ", ".join(flavor.option_names) or "none"
        raise InvalidInput(
            f"flavor_options: {unknown[0]!r} is not an option of the {flavor.name} flavor "
            f"(it accepts: {accepted})",
            details={
                "field": f"flavor_options.{unknown[0]}",
                "accepted": list(flavor.option_names),
            },
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.saving-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        flavor_spec = flavor.save(
            obj, tmp, trusted=trusted, serialization=serialization, options=options
        )
        example_file = None
        if input_example is not None:
            example = to_columns(input_example)
            # The object is in this process already: reading back what we just wrote trusts
            # nothing new (and checks the files load before they are published).
            predictor = flavor.load(tmp, flavor_spec, trusted=True)
            signature = _signature(predictor, example, signature)
            write_example(tmp / EXAMPLE_FILE, example)
            example_file = EXAMPLE_FILE
        spec = ModelSpec(
            format_version=FORMAT_VERSION,
            created_at=datetime.now(UTC),
            flavors={flavor.name: flavor_spec},
            signature=signature,
            input_example=example_file,
            python_version=platform.python_version(),
            requirements=_requirements(flavor, obj),
            files=digest_files(tmp),
            run_id=run_id,
            dataset_versions=list(dataset_versions),
        )
        write_spec(tmp, spec)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return spec


def _signature(predictor: Predictor, example: Any, given: Signature | None) -> Signature:
    labels = None if predictor.classes is None else list(predictor.classes)
    if given is None:
        probe = infer_signature(example, np.zeros(0), labels=labels)
        cols = enforce(probe, example)
        prediction = predictor.predict(to_flavor_input(predictor, probe, cols))
        return infer_signature(example, prediction, labels=labels)
    cols = enforce(given, example)  # the example must satisfy the signature it comes with
    predictor.predict(to_flavor_input(predictor, given, cols))
    return given


def _requirements(flavor: Flavor, obj: Any) -> list[str]:
    pins = []
    for package in dict.fromkeys((*flavor.requirements(obj), "strata-ml")):
        version = dist_version(package)
        if version is not None:
            pins.append(f"{package}=={version}")
    return pins


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _listing(directory: Path) -> dict[str, Path]:
    """Every entry under ``directory`` but the yaml, by relative POSIX path; symlinks and
    other non-regular files are refused (one could point anywhere)."""
    out: dict[str, Path] = {}
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            full = Path(root) / name
            rel = full.relative_to(directory).as_posix()
            if full.is_symlink() or not (full.is_dir() or full.is_file()):
                raise DigestMismatch(
                    f"Model file {rel!r} is a link or special file; a model directory holds "
                    f"regular files only",
                    details={"file": rel},
                )
            if name in files and rel != SPEC_FILE:
                out[rel] = full
    return out


def digest_files(directory: Path) -> dict[str, FileDigest]:
    """The sha256 and size of every file under ``directory`` except strata-model.yaml."""
    return {
        rel: FileDigest(sha256=sha256_file(full), size=full.stat().st_size)
        for rel, full in sorted(_listing(directory).items())
    }


def write_spec(directory: Path, spec: ModelSpec) -> None:
    text = yaml.dump(spec.model_dump(mode="json"), Dumper=_Dumper, sort_keys=False)
    tmp = directory / f".{SPEC_FILE}.{uuid.uuid4().hex}"
    tmp.write_text(text)
    os.replace(tmp, directory / SPEC_FILE)


def read_spec(directory: Path) -> tuple[ModelSpec, str]:
    """The parsed strata-model.yaml and the sha256 of its bytes."""
    path = directory / SPEC_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        what = "directory" if directory.is_dir() else "path"
        raise NotFound(
            f"No Strata model at {directory}: the {what} has no {SPEC_FILE}",
            details={"path": str(directory)},
        ) from None
    return parse_spec(raw), hashlib.sha256(raw).hexdigest()


def parse_spec(raw: bytes) -> ModelSpec:
    """strata-model.yaml's content; InvalidInput naming the key that is wrong."""
    try:
        doc = yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidInput(
            f"{SPEC_FILE} is not valid YAML{where}: {getattr(exc, 'problem', exc)}",
            details={"key": None},
        ) from None
    if not isinstance(doc, dict):
        raise InvalidInput(
            f"{SPEC_FILE} must be a mapping of keys, found {type(doc).__name__}",
            details={"key": None},
        )
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise InvalidInput(
            f"{SPEC_FILE}: format_version: {version!r} is not a format this Strata reads "
            f"(it reads {FORMAT_VERSION}); a newer strata-ml may read it",
            details={"key": "format_version"},
        )
    try:
        return ModelSpec.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err.get("loc", ()))
        problem = "unknown key" if err.get("type") == "extra_forbidden" else err.get("msg")
        raise InvalidInput(
            f"{SPEC_FILE}: {key}: {problem} (found {err.get('input')!r})",
            details={"key": key, "errors": len(exc.errors())},
        ) from None


def verify(directory: Path, spec: ModelSpec) -> None:
    """Exactly the listed files, with their sizes and sha256; DigestMismatch naming the
    first file that is missing, extra or changed."""
    present = _listing(directory)
    for rel in spec.files:
        if rel not in present:
            raise DigestMismatch(
                f"Model file {rel!r} listed in {SPEC_FILE} is missing from {directory}",
                details={"file": rel, "problem": "missing"},
            )
    for rel in present:
        if rel not in spec.files:
            raise DigestMismatch(
                f"File {rel!r} in {directory} is not listed in {SPEC_FILE}; a model "
                f"directory holds only the files it lists",
                details={"file": rel, "problem": "extra"},
            )
    for rel, expected in spec.files.items():
        full = present[rel]
        size = full.stat().st_size
        actual = sha256_file(full) if size == expected.size else None
        if actual != expected.sha256:
            got = f"{size} bytes" if actual is None else f"sha256 {actual[:16]}…"
            want = f"{expected.size} bytes" if actual is None else f"{expected.sha256[:16]}…"
            raise DigestMismatch(
                f"Model file {rel!r} changed since the model was saved ({got}, expected "
                f"{want}); refusing to load it",
                details={"file": rel, "problem": "changed"},
            )


def _is_listed(path: str, spec: ModelSpec) -> bool:
    """Whether ``path`` is one of the model's files, or a directory holding some of them."""
    prefix = path.rstrip("/") + "/"
    return path in spec.files or (
        bool(path.strip("/")) and any(f.startswith(prefix) for f in spec.files)
    )


def clear_cache() -> None:
    """Forget every cached model (the next ``load`` of each deserializes it again)."""
    with _cache_lock:
        _cache.clear()


def load(path: str | os.PathLike[str], *, trusted: bool = False) -> Model:
    """The model at ``path``, every file verified against its digest first.

    Raises NotFound (no model there), InvalidInput (unknown format version, corrupt yaml:
    the message names the key), DigestMismatch (a file missing, extra or changed: the
    message names it), PermissionDenied (a pickle or foreign types without ``trusted``).
    Models are cached by digest: loading the same bytes again returns the same object.
    """
    directory = Path(path)
    spec, key = read_spec(directory)
    verify(directory, spec)
    with _cache_lock:
        cached = _cache.get((key, trusted))
        # a model loaded from a download that has since been removed is loaded again here
        if cached is not None and cached.path.is_dir():
            _cache.move_to_end((key, trusted))
            return cached
    name = spec.flavor
    flavor_spec = spec.flavors[name]
    if not _is_listed(flavor_spec.path, spec):
        raise InvalidInput(
            f"{SPEC_FILE}: flavors.{name}.path: {flavor_spec.path!r} is not one of the "
            f"model's files",
            details={"key": f"flavors.{name}.path"},
        )
    if spec.input_example is not None and spec.input_example not in spec.files:
        raise InvalidInput(
            f"{SPEC_FILE}: input_example: {spec.input_example!r} is not one of the model's files",
            details={"key": "input_example"},
        )
    predictor = get_flavor(name, f"flavors.{name}").load(directory, flavor_spec, trusted=trusted)
    model = Model(directory, spec, predictor)
    with _cache_lock:
        _cache[(key, trusted)] = model
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return model
