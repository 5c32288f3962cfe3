# syntax=docker/dockerfile:1
# The newsdedup service image: every role (prepare, match, ingest, db upgrade, ...) is a
# subcommand of the `newsdedup` entrypoint, e.g. `docker run IMAGE match`.
#
#   docker build -t newsdedup .
#   docker compose up --build      # the whole stack, see docker-compose.yml

# -- build: wheels for the project and its dependencies (all have manylinux wheels) --
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ingest ./ingest
COPY consumers ./consumers
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# -- runtime --
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels newsdedup \
 && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home newsdedup
WORKDIR /app
# The invented sample articles, for the demo producer (`newsdedup ingest samples/articles.jsonl`).
COPY --chown=root:root samples ./samples
USER newsdedup
# /metrics, /healthz and /readyz (NEWSDEDUP_METRICS_PORT)
EXPOSE 9400
ENTRYPOINT ["newsdedup"]
CMD ["--help"]
