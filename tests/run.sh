#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need, brings up the cluster the
# cluster suites run against when it is this repository's local one (tests/kube.py decides),
# runs pytest, and stops what it started. Each stage prints how long it took.
# Under CI (CI=true) every test must run: KUBERL_REQUIRE_ALL=1 turns "missing tool" skips into failures.
set -euo pipefail
cd "$(dirname "$0")/.."

stage_started=$SECONDS
stage() {  # stage NAME: prints the time the stage before it took
  echo "[tests/run.sh] stage ${1}: $((SECONDS - stage_started))s" >&2
  stage_started=$SECONDS
}

python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"

# Real servers the tests start themselves: a throwaway MariaDB for the MySQL path, a Docker
# engine (plus debootstrap, for a base image made without a registry) for the images, and
# what the local Kubernetes node runs on (runc comes with docker.io; CNI plugins; the
# iptables and conntrack that kube-proxy drives).
missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have mariadbd || missing+=(mariadb-server)
have dockerd || missing+=(docker.io)
have debootstrap || missing+=(debootstrap)
# The dashboard's test loads the page in headless Chromium.
have chromium || missing+=(chromium)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
have iptables || missing+=(iptables)
have conntrack || missing+=(conntrack)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tests/run.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "tests/run.sh: missing ${missing[*]} and no root apt-get: those tests skip (and fail under CI)" >&2
  fi
fi
stage install

if [ "${CI:-}" = "true" ]; then
  export KUBERL_REQUIRE_ALL=1
fi

# The cluster suites' cluster: decided, built (once per machine) and started before pytest,
# outside its per-test timeout. Not for a run of only other suites.
# The docker suite's Compose v2 is built by `prepare` too, or alone for a run without the cluster.
needs_cluster=1
needs_compose=0
if [ "$#" -gt 0 ]; then
  needs_cluster=0
  for arg in "$@"; do
    case "$arg" in
      *e2e*|*operator*|*k8s*|*localcluster*|tests|tests/) needs_cluster=1 ;;
      *docker*) needs_compose=1 ;;
    esac
  done
fi
if [ "$needs_cluster" = 1 ]; then
  trap 'python3 -m tests.kube cleanup' EXIT
  if ! python3 -m tests.kube prepare; then
    if [ "${KUBERL_REQUIRE_ALL:-}" = 1 ]; then exit 1; fi
    echo "tests/run.sh: the cluster could not be prepared; its tests will say why" >&2
  fi
elif [ "$needs_compose" = 1 ] && ! python3 -m tests.kube prepare-compose; then
  if [ "${KUBERL_REQUIRE_ALL:-}" = 1 ]; then exit 1; fi
  echo "tests/run.sh: Compose v2 could not be built; its test will say why" >&2
fi
stage_started=$SECONDS

status=0
python3 -m pytest "$@" || status=$?
stage pytest
exit "$status"
