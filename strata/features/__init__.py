"""The feature store: entities, feature views, point-in-time training sets, online values
(docs/features.md)."""
