"""Serving: the inference server (Open Inference Protocol v2, the MLflow scoring protocol,
Strata JSON), adaptive batching, traffic policies, the prediction log, batch and stream
scoring, deployment manifests (docs/serving.md)."""
