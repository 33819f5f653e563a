#!/usr/bin/env bash
# Validates the Prometheus alert rules and runs their unit tests with promtool.
# promtool comes from Debian's `prometheus` package, installed here when missing. If it cannot be
# installed (no root, no package index), the check says so loudly and exits 0 only when
# ALERTS_MAY_SKIP=1; otherwise it fails.
set -euo pipefail
cd "$(dirname "$0")/../deploy/prometheus"

if ! command -v promtool >/dev/null; then
  echo "promtool not found; installing Debian's prometheus package" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus; } >/dev/null 2>&1 || true
fi
if ! command -v promtool >/dev/null; then
  echo "********************************************************************" >&2
  echo "*** ALERT RULE TESTS DID NOT RUN: promtool could not be installed ***" >&2
  echo "********************************************************************" >&2
  [ "${ALERTS_MAY_SKIP:-0}" = 1 ] && exit 0
  exit 1
fi

promtool check rules alerts.yml
promtool test rules alerts.test.yml

# The dashboard's queries must parse too: each becomes a recording rule, with Grafana's variables
# replaced by values (promtool knows no `$__rate_interval`).
dashboard=../grafana/recipient-gateway.json
rules=$(mktemp --suffix=.yml)
trap 'rm -f "$rules"' EXIT
python3 - "$dashboard" > "$rules" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
print("groups:\n  - name: dashboard\n    rules:")
for panel in dash["panels"]:
    for target in panel["targets"]:
        expr = target["expr"].replace("$__rate_interval", "5m").replace("$job", ".*")
        print("      - record: dashboard:panel_%d_%s" % (panel["id"], target["refId"].lower()))
        print("        expr: %s" % json.dumps(expr))
PY
promtool check rules "$rules"
