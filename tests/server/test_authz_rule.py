"""The expected permission of every route, pinned independently of what the route declares.

``test_authz_matrix`` checks that each route answers according to its *own* ``require(...)``,
so a route downgraded to READ passes it. Here the expectation comes from a hand-written rule:

- reads (GET) need READ; writes (POST, PUT, PATCH, DELETE) need WRITE or more;
- users, tokens, the audit log and registered connections need ADMIN (whoami excepted);
- search-by-POST routes (MLflow's ``*/search`` and friends) are reads: they are listed by
  name below, so a new POST is a write until someone adds it here on purpose.

Both ``/api`` and ``/ajax-api`` (MLflow's UI prefix) are covered, and so are the routes at the
root (``/graphql``, ``/feedback``, the multipart part URLs, ...), except the web UI's pages
(``strata.ui``: a session cookie, checked by the services they call). A route the rule does
not place fails the test, and so does an allow-list entry that no longer exists.
"""

from __future__ import annotations

from fastapi.routing import APIRoute, iter_route_contexts

from strata.core.config import Settings
from strata.core.principal import Permission
from strata.server.app import create_app

from .test_authz_matrix import permissions_of

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ADMIN_PREFIXES = ("/api/v1/users", "/api/v1/tokens", "/api/v1/audit", "/api/v1/connections")
#: POST routes that only read: (method, template without the /api or /ajax-api prefix).
READ_POSTS = frozenset(
    {
        "/2.0/mlflow/runs/search",
        "/2.0/mlflow/experiments/search",
        "/2.0/mlflow/logged-models/search",
        "/2.0/mlflow/registered-models/get-latest-versions",
        "/v1/runs/search",
        "/v1/runs/compare",
        "/v1/runs/input-uses",
        "/v1/experiments/search",
        "/v1/experiments/search-datasets",
        "/2.0/mlflow/experiments/search-datasets",
        "/v1/logged-models/search",
        "/v1/features/plan",
        "/v1/features/historical",
        "/v1/features/online",
        # a drift report computes; storing it (options.store_as) is checked for write by
        # the monitoring service itself, embedded and remote alike
        "/v1/monitoring/drift",
        "/v1/monitoring/drift/html",
        "/v1/monitoring/performance",  # likewise for options.store
        "/graphql",  # MLflow's UI reads through it; every field is a read (no mutation writes)
    }
)
#: Root routes that need no permission, each on purpose: (method, template).
PUBLIC = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/index.json"),
        # MLflow's presigned part URL: the mlflow client PUTs it without its own headers, so
        # the credential is the upload's random token in the URL (stored as its sha256, good
        # for that one upload and 24 h), checked by the handler; creating and completing the
        # upload need WRITE on the run.
        ("PUT", "/uploads/mlflow/{upload_id}/{part_number}"),
    }
)
_RANK = {Permission.READ: 0, Permission.WRITE: 1, Permission.APPROVE: 2, Permission.ADMIN: 3}


def _short(path: str) -> str:
    return path.removeprefix("/ajax-api").removeprefix("/api")


def expected(method: str, path: str) -> Permission | None:
    """The permission the rule demands (None: the rule cannot place this route)."""
    if path.startswith(ADMIN_PREFIXES):
        return Permission.ADMIN
    if method == "GET":
        return Permission.READ
    if method in WRITES:
        return (
            Permission.READ
            if method == "POST" and _short(path) in READ_POSTS
            else (Permission.WRITE)
        )
    return None


def routes(settings: Settings) -> list[tuple[str, str, Permission | None]]:
    found = []
    for ctx in iter_route_contexts(create_app(settings).routes):
        path = ctx.path or ""
        route = ctx.original_route
        if not path.startswith(("/api/", "/ajax-api/")) and (
            not isinstance(route, APIRoute) or route.endpoint.__module__.startswith("strata.ui")
        ):
            continue  # the OpenAPI document, static files, the UI's pages
        if not isinstance(route, APIRoute):
            found.append(("?", path, None))
            continue
        perms = set(permissions_of(ctx.dependant)) if ctx.dependant is not None else set()
        perm = perms.pop() if len(perms) == 1 else None
        for method in sorted(ctx.methods or ()):
            if method in ("HEAD", "OPTIONS"):
                continue
            found.append((method, path, perm))
    return found


def test_every_route_needs_what_the_rule_says(sqlite_settings: Settings) -> None:
    found = routes(sqlite_settings)
    assert any(p.startswith("/ajax-api/") for _, p, _ in found), "the MLflow UI prefix is seen"
    problems = []
    for method, path, declared in found:
        if (method, path) in PUBLIC:
            if declared is not None:
                problems.append(f"{method} {path}: listed as public, declares {declared.value}")
            continue
        want = expected(method, path)
        if want is None:
            problems.append(f"{method} {path}: not placed by the rule; extend it on purpose")
        elif declared is None:
            problems.append(f"{method} {path}: declares no single require(...)")
        elif method in WRITES and want is not Permission.READ and _RANK[declared] < _RANK[want]:
            problems.append(f"{method} {path}: declares {declared.value}, needs {want.value}+")
        elif declared is not want and not (method in WRITES and _RANK[declared] >= _RANK[want]):
            problems.append(f"{method} {path}: declares {declared.value}, expected {want.value}")
    assert not problems, f"{len(problems)} routes off the rule:\n" + "\n".join(problems)
    posts = {_short(p) for m, p, _ in found if m == "POST"}
    stale = sorted(READ_POSTS - posts)
    assert not stale, f"READ_POSTS lists routes that no longer exist: {stale}"
    assert {(m, p) for m, p, _ in found} >= PUBLIC, "PUBLIC lists routes that no longer exist"
    root = {(m, p) for m, p, _ in found if not p.startswith(("/api/", "/ajax-api/"))}
    assert {("GET", "/graphql"), ("POST", "/graphql"), ("POST", "/feedback")} <= root
