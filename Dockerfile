# Strata server image: a wheel built in one stage, installed into a slim runtime in the next.
#   docker build -t strata-ml .
#   docker run -p 8080:8080 -v strata-data:/data strata-ml     # prints the admin token once
# Embedded defaults (SQLite + files under /data); docker-compose.yml wires PostgreSQL + MinIO.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY strata ./strata
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STRATA_HOME=/data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --create-home --uid 10001 strata \
    && mkdir -p /data && chown strata:strata /data
USER strata
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
# Auth stays on (the default): off loopback the server refuses to run without it.
CMD ["strata", "server", "--host", "0.0.0.0", "--port", "8080"]
