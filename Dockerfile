# The image every ingot-retrain step runs in (components.DEFAULT_IMAGE is its default name):
#   docker build -t ghcr.io/ingot/ingot:0.1.0 . && docker push ghcr.io/ingot/ingot:0.1.0
# Another registry or tag: build and push it, then compile or submit with that name:
#   INGOT_IMAGE=REGISTRY/ingot:TAG ingot pipeline compile -o ingot-retrain.yaml   # or: ingot pipeline run --host URL --image ...
#
# Base: the official TensorFlow GPU image at the exact TensorFlow version requirements.lock pins,
# so CUDA/cuDNN match that TensorFlow build. The lock is installed as is (TensorFlow already
# satisfied by the base), then ingot itself with --no-deps, so nothing unpinned gets in.
FROM tensorflow/tensorflow:2.21.0-gpu

# PIP_BREAK_SYSTEM_PACKAGES: the base installs TensorFlow with pip into the system Python; do the
# same should a base mark it externally managed (PEP 668). pip ignores it where no marker exists.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    TF_CPP_MIN_LOG_LEVEL=2

# requirements.lock is resolved for Python 3.11 (pyproject: >=3.11,<3.12): fail the build with a
# clear message rather than install wheels for the wrong interpreter.
RUN python3 -c "import sys; v = sys.version_info[:2]; assert v == (3, 11), \
    f'ingot needs Python 3.11 (requirements.lock), but this base image has {sys.version.split()[0]}'"

WORKDIR /opt/ingot
COPY requirements.lock ./
RUN python3 -m pip install --requirement requirements.lock

COPY pyproject.toml README.md ./
COPY ingot ./ingot
COPY components ./components
COPY pipelines ./pipelines
COPY configs ./configs
RUN python3 -m pip install --no-deps . \
    && python3 -c "import ingot, components, pipelines.retrain, kfp, tensorflow; print('ingot', ingot.__version__, 'tensorflow', tensorflow.__version__)"

# Run as an unprivileged user, the "nonroot" 65532 the manifests' pods also ask for. Writable
# places for a step: its HOME (Keras caches), the data directory and the dataset cache under /tmp;
# the model repository and datasets arrive as mounted volumes or gs:// / s3:// URIs. Nothing needs
# the image's own files to be writable, so a read-only root filesystem works.
RUN groupadd --gid 65532 ingot \
    && useradd --uid 65532 --gid 65532 --create-home --home-dir /home/ingot --shell /usr/sbin/nologin ingot
ENV HOME=/home/ingot \
    INGOT_DATA_DIR=/tmp/ingot \
    DATASET_ROOT=/tmp/ingot/datasets
USER 65532:65532
WORKDIR /home/ingot

# kfp starts each step with its own command (python3 -m kfp.dsl.executor_main ...); this default
# makes `docker run IMAGE` print the CLI's help instead of a Python prompt.
CMD ["ingot", "--help"]
