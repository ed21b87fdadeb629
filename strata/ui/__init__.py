"""The web UI: server-rendered pages (Jinja2 + htmx) and charts (uPlot), mounted at ``/``."""
