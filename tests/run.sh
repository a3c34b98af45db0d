#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need, then runs pytest.
# Under CI (CI=true) every test must run: KUBERL_REQUIRE_ALL=1 turns "missing tool" skips into failures.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"

# Real servers the tests start themselves: a throwaway MariaDB for the MySQL path, and a Docker
# engine (plus debootstrap, for a base image made without a registry) for the container tests.
missing=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tests/run.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "tests/run.sh: missing ${missing[*]} and no root apt-get: those tests skip (and fail under CI)" >&2
  fi
fi

if [ "${CI:-}" = "true" ]; then
  export KUBERL_REQUIRE_ALL=1
fi
exec python3 -m pytest "$@"
