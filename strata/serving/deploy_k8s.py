"""The Kubernetes manifests `strata deploy build` writes beside the image's context: a
ConfigMap (the bootstrap's settings), a Deployment (probes on /v2/health, non-root, read-only
root filesystem), a Service and a HorizontalPodAutoscaler, as plain dicts dumped to YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from strata.serving.batch_model import PinnedModel
from strata.serving.deploy import (
    BOOTSTRAP_PATH,
    HOME_DIR,
    UID,
    DeployOptions,
    label_value,
    serve_env,
)

MANIFESTS = ("configmap.yaml", "deployment.yaml", "service.yaml", "hpa.yaml")


def write_manifests(
    k8s: Path,
    app: str,
    image: str,
    model: PinnedModel,
    opts: DeployOptions,
    serve_ref: str,
) -> list[str]:
    import yaml

    k8s.mkdir()
    docs = manifests(app, image, model, opts, serve_ref)
    files = []
    for name, doc in zip(MANIFESTS, docs, strict=True):
        (k8s / name).write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
        files.append(f"k8s/{name}")
    return files


def manifests(
    app: str, image: str, model: PinnedModel, opts: DeployOptions, serve_ref: str
) -> list[dict[str, Any]]:
    """The ConfigMap, Deployment, Service and HorizontalPodAutoscaler, as plain dicts."""
    labels = {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/part-of": "strata",
        "app.kubernetes.io/managed-by": "strata-deploy",
    }
    if model.name is not None:
        labels["strata.dev/model"] = label_value(model.name)
        labels["strata.dev/version"] = label_value(str(model.version))
    annotations = {
        "strata.dev/model-ref": model.ref,
        "strata.dev/model-uri": model.uri,
        "strata.dev/model-digest": model.digest,
    }
    meta: dict[str, Any] = {"name": app, "labels": labels, "annotations": annotations}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    config: dict[str, str] = {
        **serve_env(model, opts, serve_ref),
        "STRATA_HOME": HOME_DIR,
        "STRATA_LOG_JSON": "true",
        "OMP_NUM_THREADS": "1",
    }
    if opts.server_uri:
        config["STRATA_URI"] = opts.server_uri
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {**meta, "name": f"{app}-config"},
        "data": config,
    }

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": failures,
        }

    container = {
        "name": "server",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["python", BOOTSTRAP_PATH],
        "ports": [{"name": "http", "containerPort": opts.port, "protocol": "TCP"}],
        "envFrom": [
            {"configMapRef": {"name": f"{app}-config"}},
            {"secretRef": {"name": f"{app}-auth", "optional": True}},
        ],
        "startupProbe": probe("/v2/health/live", 5, 60),
        "livenessProbe": probe("/v2/health/live", 10, 3),
        "readinessProbe": probe("/v2/health/ready", 5, 3),
        "resources": {
            "requests": {"cpu": opts.cpu_request, "memory": opts.memory_request},
            "limits": {"cpu": opts.cpu_limit, "memory": opts.memory_limit},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "home", "mountPath": HOME_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": opts.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": app}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [
                        {"name": "home", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": app},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
            "minReplicas": min(opts.replicas, opts.max_replicas),
            "maxReplicas": opts.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": opts.cpu_target},
                    },
                }
            ],
        },
    }
    return [configmap, deployment, service, hpa]
