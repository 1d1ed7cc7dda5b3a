# One image for every service of docker-compose.yaml: Airflow (api-server, scheduler, dag-processor,
# triggerer, Celery workers), the MLflow server and the `incremental` CLI.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
    GX_ANALYTICS_ENABLED=False
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 curl tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 50000 --gid 0 airflow
WORKDIR /opt/search-ranker

# The lock first (a layer that changes rarely), then the project itself without re-resolving.
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY pyproject.toml README.md* ./
COPY incremental ./incremental
COPY sql ./sql
COPY dags ./dags
COPY plugins ./plugins
COPY scripts ./scripts
COPY incremental.yaml* ./
RUN pip install --no-deps -e . && mkdir -p /opt/airflow /data && chown -R 50000:0 /opt/airflow /data

USER 50000
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["airflow", "version"]
