"""``strata deploy build``: a Docker build context and Kubernetes manifests for one model.

``build(ref, out)`` writes into ``out``:

- ``Dockerfile`` + ``requirements.txt`` (strata-ml with the extras the model's flavors need,
  and the model's own pinned requirements) + ``.dockerignore`` + ``bootstrap.py`` (the
  entry point: serves the copied model through ``strata serve``, see :data:`BOOTSTRAP`);
- ``model/``: the model's files, verified against their digests first (``--fetch`` instead:
  the container loads the ref from a Strata server at start and follows its alias);
- ``wheels/`` with a local strata-ml wheel when one is given (for images built offline);
- ``k8s/``: a ConfigMap (the serve settings), a Deployment (probes on ``/v2/health/live`` and
  ``/v2/health/ready``, a non-root read-only container), a Service and a
  HorizontalPodAutoscaler (``autoscaling/v2``, CPU utilisation).

Safety: every name in the manifests is derived from the model's name through a strict
DNS-1123 mapping; values are written with ``yaml.safe_dump`` (never by string formatting),
the Dockerfile's command in JSON exec form, and file names are fixed: nothing a model name or
ref holds can choose where a file goes, or add a YAML key or a Dockerfile instruction.
Secrets never enter the output: the Deployment reads an optional Secret ``<app>-auth``
(``STRATA_ADMIN_TOKEN``, ``STRATA_TOKEN``) that the operator creates.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from strata.core.errors import AlreadyExists, InvalidInput
from strata.serving.batch_model import PinnedModel, Services, default_services, pin

#: Where the model and the state live in the image.
MODEL_DIR = "/opt/strata/model"
HOME_DIR = "/var/lib/strata"
UID = 10001
#: Top-level entries of ``out`` that ``build`` writes (and, with ``force``, replaces).
OWNED = (
    "Dockerfile",
    "requirements.txt",
    ".dockerignore",
    "bootstrap.py",
    "model",
    "wheels",
    "k8s",
)
BOOTSTRAP_PATH = "/opt/strata/bootstrap.py"

#: The container's entry point (a fixed file: nothing of the model is interpolated into it).
#: ``strata serve`` takes registered refs and ``runs:/`` URIs, not directories, so for a
#: model copied into the image it checks the copy against the pinned digest, logs it as a
#: run's artifacts in the container's own store (``STRATA_HOME``, an emptyDir) and serves
#: ``runs:/<run>/<name>``; with ``STRATA_MODEL_REF`` set (``--fetch``) it serves that ref.
#: ``STRATA_ADMIN_TOKEN`` (from the optional Secret) becomes the first admin's token: the
#: bearer token callers send.
BOOTSTRAP = '''"""Entry point of a Strata model server image (written by `strata deploy build`)."""

import hashlib
import json
import os
import sys
from pathlib import Path


def main() -> None:
    env = os.environ
    from strata.client import Client
    from strata.core.config import load_settings

    # Callers' tokens are checked against this container's own store (STRATA_HOME), in both
    # modes: STRATA_ADMIN_TOKEN (the optional Secret) becomes its first admin's token.
    local = Client("", settings=load_settings().model_copy(update={"uri": ""}))
    if env.get("STRATA_ADMIN_TOKEN"):
        from strata.governance.embedded import EmbeddedGovernance

        EmbeddedGovernance(local.backends).bootstrap_admin(secret=env["STRATA_ADMIN_TOKEN"])
    ref = env.get("STRATA_MODEL_REF", "")
    if not ref:
        import strata

        model_dir = Path(env.get("STRATA_MODEL_DIR", "/opt/strata/model"))
        name = env.get("STRATA_SERVE_NAME", "model")
        digest = hashlib.sha256((model_dir / "strata-model.yaml").read_bytes()).hexdigest()
        if digest != env.get("STRATA_MODEL_DIGEST", digest):
            sys.exit(f"{model_dir}/strata-model.yaml is not the model this image was built for")
        with strata.start_run(
            experiment="deploy", client=local, capture_environment=False
        ) as run:
            local.tracking.log_artifacts(run.run_id, model_dir, name)
        ref = f"runs:/{run.run_id}/{name}"
    local.close()
    args = [
        "strata", "serve", ref,
        "--host", env.get("STRATA_SERVE_HOST", "0.0.0.0"),
        "--port", env.get("STRATA_SERVE_PORT", "8080"),
        "--workers", env.get("STRATA_SERVE_WORKERS", "1"),
    ]
    if env.get("STRATA_BOOTSTRAP_PRINT"):
        print(json.dumps(args), flush=True)
    os.execvp(args[0], args)


if __name__ == "__main__":
    main()
'''

#: The strata-ml extras a flavor needs at serving time.
FLAVOR_EXTRAS = {
    "sklearn": "models",
    "lightgbm": "models",
    "xgboost": "models",
    "onnx": "models",
    "pytorch": "torch",
    "sentence_transformers": "sentence-transformers",
}
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_IMAGE = re.compile(r"^[a-z0-9]([a-z0-9._\-/:]{0,250}[a-zA-Z0-9_.\-])?(@sha256:[0-9a-f]{64})?$")


class DeployOptions(BaseModel):
    """How the image and the manifests are built (``strata deploy build`` flags)."""

    model_config = ConfigDict(extra="forbid")

    #: The image name the Deployment runs (default ``strata-<model>:<version>``).
    image: str | None = None
    #: The base image (default ``python:<the model's Python major.minor>-slim``).
    base_image: str | None = None
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    replicas: int = Field(2, ge=1, le=1000)
    max_replicas: int = Field(10, ge=1, le=1000)
    cpu_target: int = Field(70, ge=1, le=100, description="HPA average CPU utilisation, %.")
    cpu_request: str = "500m"
    memory_request: str = "512Mi"
    cpu_limit: str = "2"
    memory_limit: str = "2Gi"
    namespace: str | None = None
    #: Load the ref from a Strata server when the container starts (follows aliases)
    #: instead of copying the pinned version into the image.
    fetch: bool = False
    #: The Strata server a fetching container loads from (``STRATA_URI``).
    server_uri: str | None = None
    #: A local strata-ml wheel to install instead of the package index's.
    wheel: Path | None = None
    #: Replace the files ``build`` owns in a non-empty ``out``.
    force: bool = False

    @field_validator("cpu_request", "memory_request", "cpu_limit", "memory_limit")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if not _QUANTITY.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 2Gi)")
        return value

    @field_validator("image", "base_image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not _IMAGE.match(value):
            raise ValueError(
                f"{value!r} is not an image reference (lowercase registry/name:tag, e.g. "
                "registry.example.com/strata-flights:3)"
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", value):
            raise ValueError(f"{value!r} is not a namespace name (DNS-1123 label)")
        return value

    @field_validator("server_uri")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[A-Za-z0-9.\-:\[\]/_%]{1,500}", value):
            raise ValueError(f"{value!r} is not an http(s) URL of a Strata server")
        return value


@dataclass(frozen=True)
class DeployResult:
    """What ``build`` wrote: the directory, its files (relative), the app and image names."""

    out: Path
    files: list[str]
    app: str
    image: str
    model: dict[str, str | None]


def dns_label(text: str, prefix: str = "strata-") -> str:
    """``text`` as a DNS-1123 label (lowercase alphanumerics and ``-``, at most 63), always
    starting with ``prefix``; when the mapping changed or cut it, an 8-hex digest of the
    original keeps distinct names distinct."""
    clean = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    label = f"{prefix}{clean}".strip("-")
    if clean != text or len(label) > 63:
        tag = hashlib.sha256(text.encode()).hexdigest()[:8]
        label = f"{label[: 63 - 9].rstrip('-')}-{tag}"
    return label


def label_value(text: str) -> str:
    """``text`` as a Kubernetes label value (``[A-Za-z0-9_.-]``, ≤ 63, alphanumeric ends)."""
    clean = re.sub(r"[^A-Za-z0-9_.\-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", clean)


def _names(model: PinnedModel) -> tuple[str, str]:
    """(app name, default image tag) of a pinned model."""
    if model.name is not None:
        return dns_label(model.name), str(model.version)
    if model.run_id:
        return dns_label(f"run-{model.run_id[:12]}"), model.digest[:12]
    return dns_label(model.path.name or "model"), model.digest[:12]


def extras_for(flavors: list[str]) -> list[str]:
    """The strata-ml extras the model's flavors need (sorted, without duplicates)."""
    return sorted({FLAVOR_EXTRAS[f] for f in flavors if f in FLAVOR_EXTRAS})


def needs_openmp(model: PinnedModel) -> bool:
    """Whether the image installs LightGBM (the model's flavor, its pins, or the ``models``
    extra, which brings it): its wheel needs the system's libgomp, unlike scikit-learn's and
    XGBoost's, which carry their own."""
    names = {re.split(r"[\[=<>~!\s]", r, maxsplit=1)[0].lower() for r in model.spec.requirements}
    return "lightgbm" in names or "models" in extras_for(model.flavors)


def _python(version: str) -> str:
    m = re.match(r"^(\d+)\.(\d+)", version)
    return f"{m.group(1)}.{m.group(2)}" if m else "3.12"


def _requirement_line(req: str) -> str:
    """One pinned requirement of the model, refused when it is not a plain ``name==version``
    specifier (a requirements file also reads options such as ``--index-url``)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-\[\],]*\s*(==|>=|~=)\s*[A-Za-z0-9.+!*\-]+", req):
        raise InvalidInput(
            f"The model's requirement {req!r} is not a plain NAME==VERSION pin; refusing to "
            "write it into requirements.txt",
            details={"field": "requirements", "value": req},
        )
    return req.replace(" ", "")


def _strata_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("strata-ml")
    except PackageNotFoundError:
        return "0.0.0"


def build(
    ref: str,
    out: str | os.PathLike[str],
    options: DeployOptions | None = None,
    *,
    client: Services | None = None,
    **option_fields: Any,
) -> DeployResult:
    """Write the Docker build context and the Kubernetes manifests for ``ref`` into ``out``.

    ``ref`` is a ``MODEL_REF`` (:mod:`strata.serving.batch_model`). Options are the fields of
    :class:`DeployOptions`. ``out`` must not exist or be empty unless ``force`` (which
    replaces only the entries in :data:`OWNED`). Everything is written into a temporary
    directory beside ``out`` first and moved into place at the end, so a failure leaves
    ``out`` as it was. Raises InvalidInput (bad ref or option), NotFound (unknown model),
    AlreadyExists (``out`` not empty), DigestMismatch (changed model files).
    """
    from strata.core.parse import parse_options

    opts = parse_options(DeployOptions, options, **option_fields)
    if opts.server_uri is not None and not opts.fetch:
        raise InvalidInput(
            "server_uri is for fetch mode (the container loads the model from that server); "
            "add fetch=True (--fetch) or drop it",
            details={"field": "server_uri"},
        )
    if opts.wheel is not None and not (opts.wheel.is_file() and opts.wheel.suffix == ".whl"):
        raise InvalidInput(f"--wheel {opts.wheel} is not a .whl file", details={"field": "wheel"})
    target = Path(out).expanduser()
    _check_out(target, opts.force)
    services = client or default_services()
    model = pin(services, ref)
    app, tag = _names(model)
    image = opts.image or f"{app}:{label_value(tag) or 'latest'}"
    serve_ref = _serve_ref(model, opts)
    parent = target.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".strata-deploy-", dir=parent))
    try:
        files = _write_context(work, model, opts, serve_ref)
        from strata.serving.deploy_k8s import write_manifests

        files += write_manifests(work / "k8s", app, image, model, opts, serve_ref)
        _publish(work, target, opts.force)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return DeployResult(out=target, files=sorted(files), app=app, image=image, model=model.record())


def _check_out(target: Path, force: bool) -> None:
    if target.is_symlink():
        raise InvalidInput(
            f"--out {target} is a symbolic link; name a real directory",
            details={"field": "out"},
        )
    if target.exists() and not target.is_dir():
        raise InvalidInput(f"--out {target} is a file, not a directory", details={"field": "out"})
    if target.is_dir() and any(target.iterdir()) and not force:
        raise AlreadyExists(
            f"--out {target} is not empty; choose a new directory or pass --force to replace "
            f"{', '.join(OWNED)} in it",
            details={"field": "out"},
        )
    if force and target.is_dir():
        for name in OWNED:
            if (target / name).is_symlink():
                raise InvalidInput(
                    f"{target / name} is a symbolic link; refusing to replace it",
                    details={"field": "out"},
                )


def _serve_ref(model: PinnedModel, opts: DeployOptions) -> str:
    """``STRATA_MODEL_REF`` for the bootstrap: "" for a copied model (served as the run it
    logs it to), the ref to load from a Strata server with ``--fetch``."""
    if not opts.fetch:
        return ""
    if model.name is None:
        if model.uri.startswith("runs:/"):
            return model.uri
        raise InvalidInput(
            "--fetch needs a registered model or a runs:/ URI: a local directory has nothing "
            "to fetch from; drop --fetch to copy it into the image",
            details={"field": "fetch"},
        )
    return model.ref.strip().removeprefix("models:/")


def _write_context(
    work: Path, model: PinnedModel, opts: DeployOptions, serve_ref: str
) -> list[str]:
    files: list[str] = []
    extras = extras_for(model.flavors)
    spec = f"[{','.join(extras)}]" if extras else ""
    # strata-ml itself is the first line (with the extras, or the given wheel): the model's own
    # strata-ml pin would make pip look for it on the index too, and fail with a local wheel
    pins = [
        _requirement_line(r)
        for r in model.spec.requirements
        if re.split(r"[\[=<>~!\s]", r, maxsplit=1)[0].lower().replace("_", "-") != "strata-ml"
    ]
    wheel_line = f"strata-ml{spec}=={_strata_version()}"
    if opts.wheel is not None:
        (work / "wheels").mkdir()
        shutil.copy2(opts.wheel, work / "wheels" / opts.wheel.name)
        files.append(f"wheels/{opts.wheel.name}")
        wheel_line = f"strata-ml{spec} @ file:///opt/strata/wheels/{opts.wheel.name}"
        if not re.fullmatch(r"[A-Za-z0-9_.\-+]+\.whl", opts.wheel.name):
            raise InvalidInput(
                f"Wheel file name {opts.wheel.name!r} has characters a requirement cannot hold",
                details={"field": "wheel"},
            )
    (work / "requirements.txt").write_text(
        "# strata-ml with the extras this model's flavors need, then the model's own pins\n"
        + "\n".join([wheel_line, *pins])
        + "\n"
    )
    files.append("requirements.txt")
    if not opts.fetch:
        for rel in sorted(model.spec.files):
            parts = Path(rel).parts
            if Path(rel).is_absolute() or ".." in parts or "\\" in rel:
                raise InvalidInput(
                    f"Model file name {rel!r} is not a plain relative path",
                    details={"field": "model"},
                )
            dest = work / "model" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model.path / rel, dest)
        shutil.copyfile(model.path / "strata-model.yaml", work / "model" / "strata-model.yaml")
        files += ["model/strata-model.yaml", *(f"model/{r}" for r in model.spec.files)]
    (work / ".dockerignore").write_text("k8s/\n")
    (work / "bootstrap.py").write_text(BOOTSTRAP)
    files += [".dockerignore", "bootstrap.py"]
    (work / "Dockerfile").write_text(dockerfile(model, opts, serve_ref))
    files.append("Dockerfile")
    return files


def serve_env(model: PinnedModel, opts: DeployOptions, serve_ref: str) -> dict[str, str]:
    """What the bootstrap reads: the ref (or the copied model, its served name and pinned
    digest), the port and the workers."""
    return {
        "STRATA_MODEL_REF": serve_ref,
        "STRATA_MODEL_DIR": MODEL_DIR,
        "STRATA_SERVE_NAME": model.name or "model",
        "STRATA_MODEL_DIGEST": model.digest,
        "STRATA_SERVE_PORT": str(opts.port),
        "STRATA_SERVE_WORKERS": str(opts.workers),
    }


def dockerfile(model: PinnedModel, opts: DeployOptions, serve_ref: str) -> str:
    """The Dockerfile's text. Values appear only in JSON (exec form, ``LABEL`` strings)."""
    base = opts.base_image or f"python:{_python(model.spec.python_version)}-slim"
    lines = [
        "# syntax=docker/dockerfile:1",
        f"# Strata model server for {json.dumps(model.label)} (written by strata deploy build)",
        f"FROM {base}",
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \\",
        f"    STRATA_HOME={HOME_DIR} OMP_NUM_THREADS=1",
        f"RUN useradd --create-home --uid {UID} strata && mkdir -p {HOME_DIR} \\",
        f"    && chown {UID}:{UID} {HOME_DIR}",
        "WORKDIR /opt/strata",
        "ENV "
        + " ".join(f"{k}={json.dumps(v)}" for k, v in serve_env(model, opts, serve_ref).items()),
    ]
    if needs_openmp(model):
        # LightGBM's wheel links the system's OpenMP runtime, which python:*-slim lacks
        # ("libgomp.so.1: cannot open shared object file" at load, seen building this image)
        lines.append(
            "RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \\\n"
            "    && rm -rf /var/lib/apt/lists/*"
        )
    if opts.wheel is not None:
        lines.append("COPY wheels/ /opt/strata/wheels/")
    lines += [
        "COPY requirements.txt /opt/strata/requirements.txt",
        "RUN pip install --no-cache-dir -r /opt/strata/requirements.txt",
    ]
    lines.append(f"COPY bootstrap.py {BOOTSTRAP_PATH}")
    if not opts.fetch:
        lines.append(f"COPY --chown={UID}:{UID} model/ {MODEL_DIR}/")
    labels = {
        "org.opencontainers.image.title": f"strata model server: {model.label}",
        "dev.strata.model.uri": model.uri,
        "dev.strata.model.digest": model.digest,
    }
    lines += [
        "LABEL " + " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in labels.items()),
        f"USER {UID}",
        f"EXPOSE {opts.port}",
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 CMD "
        + json.dumps(
            [
                "python",
                "-c",
                "import urllib.request; urllib.request.urlopen("
                f"'http://127.0.0.1:{opts.port}/v2/health/ready', timeout=2)",
            ]
        ),
        "CMD " + json.dumps(["python", BOOTSTRAP_PATH]),
    ]
    return "\n".join(lines) + "\n"


def _publish(work: Path, target: Path, force: bool) -> None:
    """Move the built entries of ``work`` into ``target`` (created when missing)."""
    if not target.exists():
        os.replace(work, target)
        target.chmod(0o755)  # mkdtemp made it private
        work.mkdir()  # the caller removes it
        return
    if force:  # stale entries of an earlier build (a model/ before --fetch) go too
        for name in OWNED:
            dest = target / name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            elif dest.exists():
                dest.unlink()
    for entry in sorted(work.iterdir()):
        os.replace(entry, target / entry.name)
