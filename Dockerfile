# syntax=docker/dockerfile:1
# tapforge on NVIDIA GPUs: the CUDA build of torch for training and Blender (bpy) Cycles on CUDA/OptiX for rendering.
#   docker build -t tapforge .                                  # CUDA 12.6: Maxwell to Hopper GPUs
#   docker build --build-arg CUDA_VERSION=13.0.2 -t tapforge .  # CUDA 13.0: Turing to Blackwell, driver >= 580
#   docker run --rm --gpus all -v "$PWD/data:/data" tapforge synth render --config movi_e --out /data/movi_e
# Dependencies come from pyproject.toml only, installed by docker/install.sh (which CI runs too).

# torch 2.13.0 is built for CUDA 12.6 and 13.0; the torch index follows this version (12.6.3 -> cu126)
ARG CUDA_VERSION=12.6.3
ARG UBUNTU=ubuntu22.04
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# Python 3.11 (bpy 5.0 is built for exactly 3.11) and every dependency, in a layer that only pyproject.toml changes
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU} AS deps
ARG CUDA_VERSION
ARG PYTHON_VERSION=3.11.18
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHON=/opt/venv/bin/python
RUN uv python install --no-bin "$PYTHON_VERSION" \
    && "$(uv python find --managed-python "$PYTHON_VERSION")" -m venv /opt/venv
WORKDIR /opt/tapforge
COPY pyproject.toml ./
COPY docker/install.sh docker/
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN --mount=type=cache,target=/root/.cache/pip \
    cuda="${CUDA_VERSION%.*}" \
    && TORCH_INDEX_URL="https://download.pytorch.org/whl/cu${cuda//./}" docker/install.sh deps

FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU} AS runtime
ARG CUDA_VERSION
ARG UBUNTU
LABEL org.opencontainers.image.title="tapforge" \
      org.opencontainers.image.description="Synthetic point-tracking data (Blender 5 + PyBullet) and TAPIR training, export and tracking" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU}"
# The X11/GL libraries that `import bpy` (5.0) links against; Cycles needs nothing more.
# Ubuntu removes superseded package versions from its archive, so exact pins would break rebuilds; the base tag
# pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       libegl1 libgl1 libsm6 libx11-6 libxext6 libxfixes3 libxi6 libxkbcommon0 libxrender1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --user-group tapforge \
    && install -d -o tapforge -g tapforge /data
COPY --from=deps /opt/python /opt/python
COPY --from=deps /opt/venv /opt/venv
# graphics: the container toolkit mounts the driver's OptiX library (libnvoptix) only with this capability
ENV PATH=/opt/venv/bin:$PATH \
    PYTHON=/opt/venv/bin/python \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
WORKDIR /opt/tapforge
COPY . .
# editable: the train configs are read from configs/ in the image's source folder
RUN --mount=type=cache,target=/root/.cache/pip \
    docker/install.sh project -e \
    && docker/install.sh check
# numeric, so that Kubernetes' runAsNonRoot can verify it
USER 1000:1000
WORKDIR /data
ENTRYPOINT ["tapforge"]
CMD ["--help"]
