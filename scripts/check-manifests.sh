#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/kubernetes against the schemas of a named
# Kubernetes version, strictly (unknown fields are errors), with kubernetes-validate from PyPI,
# which ships the schemas and needs no cluster. Installed here when missing. If it cannot be
# installed (no package index), the check says so loudly and exits 0 only when
# MANIFESTS_MAY_SKIP=1; otherwise it fails.
#
# The Kustomization and the ServiceMonitor (a prometheus-operator CRD) have no schema among the
# Kubernetes ones; kubernetes-validate warns about them and they are checked for YAML only.
set -euo pipefail
cd "$(dirname "$0")/../deploy/kubernetes"
KUBERNETES_VERSION=${KUBERNETES_VERSION:-1.31}

if ! command -v kubernetes-validate >/dev/null; then
  echo "kubernetes-validate not found; installing it from PyPI" >&2
  python3 -m pip install -q kubernetes-validate >/dev/null 2>&1 || true
fi
if ! command -v kubernetes-validate >/dev/null; then
  echo "*************************************************************************" >&2
  echo "*** MANIFEST CHECK DID NOT RUN: kubernetes-validate could not be installed ***" >&2
  echo "*************************************************************************" >&2
  [ "${MANIFESTS_MAY_SKIP:-0}" = 1 ] && exit 0
  exit 1
fi
kubernetes-validate --strict --quiet -k "$KUBERNETES_VERSION" ./*.yaml
echo "deploy/kubernetes: valid for Kubernetes $KUBERNETES_VERSION (strict); the Kustomization and ServiceMonitor have no Kubernetes schema and were parsed only"
