# asyncflow in a container.
#
#   docker build -t asyncflow:0.1.0 .
#   docker build -t asyncflow:0.1.0 --build-arg EXTRAS=web,postgres,bigquery .
#   docker run --rm -v "$PWD/out:/data" asyncflow:0.1.0 \
#       run /opt/asyncflow/examples/etl.py:LoadReport --date 2026-11-23
#
# Your pipelines go in an image built FROM this one (COPY them in, set
# PYTHONPATH), or in a package installed into it. Credentials never go in the
# image: they come from the environment at run time (Kubernetes Secrets, see
# docs/deploying.md).
#
# The base is pinned by its full version tag. Pin its digest as well when you
# build for production: `docker buildx imagetools inspect python:3.11.11-slim-bookworm`
# prints it; append it as python:3.11.11-slim-bookworm@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=web,postgres,duckdb,dataframe
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# Wheels of asyncflow and every dependency, built once; the runtime stage
# installs them without a compiler or a network.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[${EXTRAS}]"

FROM ${PYTHON_IMAGE}
ARG EXTRAS=web,postgres,duckdb,dataframe
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ASYNCFLOW_LOG_FORMAT=json
RUN groupadd --system --gid 10001 asyncflow \
    && useradd --system --uid 10001 --gid asyncflow --home-dir /data --shell /usr/sbin/nologin asyncflow \
    && mkdir -p /data \
    && chown asyncflow:asyncflow /data
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-index --find-links /tmp/wheels "asyncflow[${EXTRAS}]" \
    && rm -rf /tmp/wheels
COPY examples /opt/asyncflow/examples
USER 10001:10001
WORKDIR /data
ENTRYPOINT ["asyncflow"]
CMD ["--help"]
