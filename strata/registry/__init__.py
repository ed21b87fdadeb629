"""The model registry: versions, aliases with history, approvals, model cards (issue 13)."""
