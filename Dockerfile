# Strata server image: a wheel built in one stage, installed into a slim runtime in the next.
#   docker build -t strata-ml .
#   docker run -p 8080:8080 -v strata-data:/data strata-ml     # prints the admin token once
# Embedded defaults (SQLite + files under /data); docker-compose.yml wires PostgreSQL + MinIO.
# Any Python 3.11+ image with `python3 -m venv` works as the base: where Docker Hub is out of
# reach, scripts/docker-base.sh builds one from Debian packages
# (docker build --build-arg PYTHON_IMAGE=strata-python:3.11-bookworm ...).
# Dependencies are installed at the versions constraints.txt pins (the ones the tests ran on).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python3 -m venv /opt/build && /opt/build/bin/pip install --no-cache-dir -q "setuptools>=77" wheel
COPY pyproject.toml README.md ./
COPY strata ./strata
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STRATA_HOME=/data \
    PATH=/opt/strata/bin:$PATH
COPY --from=build /wheels /wheels
COPY constraints.txt /tmp/constraints.txt
RUN python3 -m venv /opt/strata \
    && /opt/strata/bin/pip install --no-cache-dir -q -c /tmp/constraints.txt /wheels/*.whl \
    && rm -rf /wheels /tmp/constraints.txt \
    && useradd --create-home --uid 10001 strata \
    && mkdir -p /data && chown strata:strata /data
USER strata
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
# Auth stays on (the default): off loopback the server refuses to run without it.
CMD ["strata", "server", "--host", "0.0.0.0", "--port", "8080"]
