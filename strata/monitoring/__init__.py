"""Monitoring: prediction-log queries, drift, performance with delayed labels, service
health, alert rules and their actions (docs/monitoring.md)."""
