#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need, then runs pytest.
# Under CI (CI=true) every test must run: KUBERL_REQUIRE_ALL=1 turns "missing tool" skips into failures.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"

# A real MariaDB server for the MySQL path (the tests start a throwaway one themselves).
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tests/run.sh: installing mariadb-server" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
  else
    echo "tests/run.sh: no mariadbd and no root apt-get: the MySQL tests will skip (fail under CI)" >&2
  fi
fi

if [ "${CI:-}" = "true" ]; then
  export KUBERL_REQUIRE_ALL=1
fi
exec python3 -m pytest "$@"
