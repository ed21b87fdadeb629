"""Online feature stores: the latest value per (feature view, entity key), read in
milliseconds. ``open_online_store(uri)`` picks SQLite (default) or Redis by the URI."""
