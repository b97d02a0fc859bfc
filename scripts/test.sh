#!/usr/bin/env bash
# The test command: installs the package with its test extra (and Debian's redis-server and
# chromium when they are missing and this user can install them), lints (ruff) and type-checks
# (mypy --strict) the code, then runs the whole suite. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e '.[test]'
if ! command -v redis-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing redis-server (needed by the Redis store tests)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium (the dashboard's browser tests drive it headless)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "ruff check"
python -m ruff check --quiet
echo "mypy --strict ergon_actors"
python -m mypy
# Two test processes: most tests wait on real processes, signals and leases more than they use
# a core. (pytest-benchmark, when installed, is kept out: it cannot run under xdist here.)
exec python -m pytest -n 2 -p no:benchmark "$@"
