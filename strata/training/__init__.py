"""Training jobs, evaluation, explainability, fairness and HPO (issue 12; docs/training.md)."""
