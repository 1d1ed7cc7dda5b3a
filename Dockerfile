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

# torch comes from PyTorch's own index, in the build chosen by TORCH_BUILD: `cpu` (the default,
# what requirements.txt's torch==2.13.0 is tested with) or a CUDA build for the GPU worker, e.g.
# `docker build --build-arg TORCH_BUILD=cu128 .` (docker-compose.yaml does this for airflow-worker-gpu).
# The CUDA wheels bring their own CUDA runtime; the host needs only the NVIDIA driver and
# container toolkit. requirements.txt's `torch==2.13.0` is then already satisfied (PEP 440 ignores
# the local label +cpu / +cu128), so the lock below installs everything else and keeps this torch (checked).
ARG TORCH_VERSION=2.13.0
ARG TORCH_BUILD=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_BUILD}
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# The lock first (a layer that changes rarely), then the project itself without re-resolving.
COPY requirements.txt ./
RUN pip install -r requirements.txt \
    && test "$(python -c 'import torch; print(torch.__version__)')" = "${TORCH_VERSION}+${TORCH_BUILD}"
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
