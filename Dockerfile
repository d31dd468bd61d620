# The app in a container, for hosts that run a Dockerfile (Hugging Face Spaces' Docker SDK, a VM, ...): docs/deploy.md.
# Not built here (no container registry is reachable from this machine for the base image): see docs/deploy.md.
#   docker build -t selfiemask . && docker run --init -p 8866:8866 -e PORT=8866 selfiemask
FROM python:3.11-slim-bookworm

# make: the image installs and serves through the Makefile, as `make setup` / `make serve` do on a machine.
RUN apt-get update && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

# A non-root user with uid 1000 (what Hugging Face Spaces runs as); the kernels write their runtime files in HOME.
RUN useradd --create-home --uid 1000 user
USER user
ENV HOME=/home/user PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /home/user/app

# The same install script as `make setup` (tools/install.sh), into /home/user/app/.venv. Without the dev tools
# (tests, lint, browser driver): EXTRAS is empty. TORCH_INDEX_URL: e.g. https://download.pytorch.org/whl/cpu
# for a CPU-only torch, a much smaller image (not tried here).
ARG TORCH_INDEX_URL=
ARG EXTRAS=
COPY --chown=user . .
RUN TORCH_INDEX_URL="$TORCH_INDEX_URL" EXTRAS="$EXTRAS" make setup PYTHON=python3

# PORT comes from the environment (Spaces' Docker SDK uses 7860 unless the Space's README sets app_port).
ENV PORT=7860 HOST=0.0.0.0 BASE_URL=/
EXPOSE 7860
CMD ["make", "-s", "serve"]
