# One image for every role: the role is the command.
#   docker run kuberl serve buffer --port 50051
#   operator: kopf run -m kuberl_operator.handlers --all-namespaces
# BASE_IMAGE must provide python3 (3.11+) with venv; on machines without a registry, pass a
# locally built one (see tests/docker/).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
RUN python3 -m venv /opt/kuberl
# The dependencies first, in a layer of their own that only pyproject.toml decides: a change to
# the code (`skaffold dev`) then rebuilds in seconds instead of downloading them all again.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); \
print(*p['build-system']['requires'], *p['project']['dependencies'], \
*p['project']['optional-dependencies']['box2d'], sep='\\n')" > requirements.txt \
 && /opt/kuberl/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt
COPY README.md ./
COPY services ./services
COPY operator ./operator
RUN /opt/kuberl/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation . \
 && find /opt/kuberl -name __pycache__ -prune -exec rm -rf {} + \
 && rm -rf /opt/kuberl/lib/python3*/site-packages/pip /opt/kuberl/lib/python3*/site-packages/setuptools

FROM ${BASE_IMAGE}
COPY --from=build /opt/kuberl /opt/kuberl
# In a container a role listens on every interface (outside one, `kuberl serve` binds loopback).
# A fixed non-root uid, so that Kubernetes' runAsNonRoot can check it.
# The data directory (replay snapshots, SQLite metrics) belongs to that uid, so that a volume
# mounted on it starts out writable.
RUN groupadd --gid 10001 kuberl && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin kuberl \
 && mkdir -p /var/lib/kuberl && chown 10001:10001 /var/lib/kuberl
ENV PATH=/opt/kuberl/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPENBLAS_NUM_THREADS=1 \
    MPLCONFIGDIR=/tmp \
    KUBERL_HOST=[::]
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["kuberl"]
CMD ["serve", "experiment"]
