#!/usr/bin/env bash
# Build the server image and prove it works: the container starts `strata server` as a non-root
# user, turns healthy, prints its admin token once, refuses unauthenticated calls, takes a run
# from the unmodified mlflow client, and runs on PostgreSQL as well as on its embedded default.
#   scripts/check-image.sh                  # builds strata-ml:check from python:3.11-slim
#   PYTHON_IMAGE=strata-python:3.11-bookworm scripts/check-image.sh   # no Docker Hub here
# Needs a Docker engine and a PostgreSQL server the container reaches on the host network:
# STRATA_TEST_POSTGRES_URL, by default the one .ci/run uses. The containers use the host's
# network, so this works where the engine runs with --bridge=none.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-strata-ml:check}
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim}
PORT=8080  # the image's own CMD and HEALTHCHECK are what is checked, so its port
PY=${PY:-.venv/bin/python}
NAME=strata-check-$$
VOLUME=strata-check-$$
cleanup() {
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  docker volume rm "$VOLUME" >/dev/null 2>&1 || true
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*" >&2; docker logs "$NAME" 2>&1 | tail -20 >&2 || true; exit 1; }
STRATA_TEST_POSTGRES_URL=${STRATA_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}
if ! docker info >/dev/null 2>&1; then
  echo "FAILED: no Docker engine answers (docker info). Start one, e.g. here:" >&2
  echo "  dockerd --iptables=false --bridge=none --storage-driver=vfs &" >&2
  exit 1
fi
if ! psql "${STRATA_TEST_POSTGRES_URL/+psycopg/}" -qc "select 1" >/dev/null 2>&1; then
  echo "FAILED: PostgreSQL at $STRATA_TEST_POSTGRES_URL does not answer; set STRATA_TEST_POSTGRES_URL" >&2
  exit 1
fi

step "build $IMAGE on $PYTHON_IMAGE"
start=$(date +%s)
docker build -q --network=host --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" -t "$IMAGE" . >/dev/null
echo "built in $(($(date +%s) - start)) s, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"

wait_healthy() {
  for _ in $(seq 1 60); do
    status=$(docker inspect -f '{{.State.Health.Status}}' "$NAME" 2>/dev/null || echo gone)
    [ "$status" = healthy ] && return 0
    [ "$status" = gone ] && fail "the container stopped"
    sleep 1
  done
  fail "not healthy after 60 s (status: $status)"
}

run_server() {  # extra docker-run arguments...
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then fail "port $PORT is taken on this host"; fi
  docker run -d --name "$NAME" --network=host -v "$VOLUME:/data" \
    --health-interval=1s "$@" "$IMAGE" >/dev/null
  wait_healthy
}

check_server() {  # label
  local token user
  token=$(docker logs "$NAME" 2>&1 | grep -o 'strata_[A-Za-z0-9_-]\{20,\}' | head -1 || true)
  [ -n "$token" ] || fail "$1: no admin token in the first start's output"
  user=$(docker exec "$NAME" id -u)
  [ "$user" = 10001 ] || fail "$1: the server runs as uid $user, not 10001"
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/api/v1/experiments")
  [ "$code" = 401 ] || fail "$1: no token got $code, not 401"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$PORT/api/v1/experiments")
  [ "$code" = 200 ] || fail "$1: the admin token got $code, not 200"
  MLFLOW_TRACKING_URI="http://127.0.0.1:$PORT" MLFLOW_TRACKING_TOKEN="$token" "$PY" - <<'EOF'
import mlflow
from mlflow.tracking import MlflowClient

mlflow.set_experiment("image-check")
with mlflow.start_run() as run:
    mlflow.log_param("alpha", 0.5)
    for step in range(10):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
got = MlflowClient().get_run(run.info.run_id)
assert got.data.params == {"alpha": "0.5"} and got.data.metrics["loss"] == 0.1, got.data
print(f"mlflow client: run {run.info.run_id} logged and read back")
EOF
  echo "$1: healthy, uid 10001, 401 without a token, 200 with it, mlflow client round trip"
}

step "embedded default (SQLite + files under /data)"
run_server
check_server embedded
docker restart "$NAME" >/dev/null
wait_healthy
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || fail "not ready after a restart"
echo "restarted on the same volume: ready"

step "PostgreSQL metadata (a fresh database on $STRATA_TEST_POSTGRES_URL's server)"
db=strata_image_check_$$
admin=${STRATA_TEST_POSTGRES_URL/+psycopg/}
psql "$admin" -qc "CREATE DATABASE $db" >/dev/null
docker rm -f "$NAME" >/dev/null && docker volume rm -f "$VOLUME" >/dev/null
run_server -e "STRATA_DB_URI=${STRATA_TEST_POSTGRES_URL%/*}/$db"
check_server postgresql
docker rm -f "$NAME" >/dev/null
psql "$admin" -qc "DROP DATABASE $db" >/dev/null
echo
echo "image check passed"
