#!/usr/bin/env bash
# Remove rackmesh's workloads (manifests/default, or the kustomization given as $1) and the agent token.
# With --crds also remove the CRDs, which DELETES EVERY DeploymentRequest (and, through their
# ownerReferences, every VirtualMachine rackmesh created).
# Usage: hack/uninstall.sh [KUSTOMIZATION_DIR] [--crds]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBECTL=${KUBECTL:-kubectl}
TARGET=manifests/default
CRDS=0
for arg in "$@"; do
  case "$arg" in
    --crds) CRDS=1 ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) TARGET=$arg ;;
  esac
done

$KUBECTL delete -k "$ROOT/$TARGET" --ignore-not-found
$KUBECTL -n rackmesh-system delete secret rackmesh-agent-token --ignore-not-found
if [[ $CRDS == 1 ]]; then
  $KUBECTL delete -k "$ROOT" --ignore-not-found
fi
