#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need, then runs pytest.
# Under CI (CI=true) every test must run: KUBERL_REQUIRE_ALL=1 turns "missing tool" skips into failures.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
if [ "${CI:-}" = "true" ]; then
  export KUBERL_REQUIRE_ALL=1
fi
exec python3 -m pytest "$@"
