#!/usr/bin/env bash
# Install rackmesh into the cluster of the current kubectl context, in the order a real API server needs:
#   1. the CRDs (repository-root kustomization), then wait until they are Established;
#   2. the rackmesh-system namespace and the agents' shared token (generated here, never committed);
#   3. the workloads: manifests/default, or the kustomization given as $1 (e.g. manifests/overlays/kind).
# Usage: hack/install.sh [KUSTOMIZATION_DIR] [--no-wait]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBECTL=${KUBECTL:-kubectl}
NAMESPACE=rackmesh-system
TARGET=manifests/default
WAIT=1
for arg in "$@"; do
  case "$arg" in
    --no-wait) WAIT=0 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) TARGET=$arg ;;
  esac
done

echo "== CRDs"
$KUBECTL apply -k "$ROOT"
$KUBECTL wait --for=condition=Established --timeout=120s \
  crd/deploymentrequests.rackmesh.io crd/clusterkopfpeerings.kopf.dev crd/kopfpeerings.kopf.dev

echo "== namespace and agent token"
$KUBECTL apply -f "$ROOT/manifests/base/namespace.yaml"
if ! $KUBECTL -n "$NAMESPACE" get secret rackmesh-agent-token >/dev/null 2>&1; then
  # 32 random bytes as hex, passed on stdin so the token never shows in a process list.
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' |
    $KUBECTL -n "$NAMESPACE" create secret generic rackmesh-agent-token --from-file=token=/dev/stdin
fi

echo "== workloads ($TARGET)"
$KUBECTL apply -k "$ROOT/$TARGET"

if [[ $WAIT == 1 ]]; then
  echo "== waiting for rollouts"
  $KUBECTL -n "$NAMESPACE" rollout status statefulset/zookeeper --timeout=300s
  $KUBECTL -n "$NAMESPACE" rollout status deployment/rackmesh-operator --timeout=180s
  $KUBECTL -n "$NAMESPACE" rollout status daemonset/rackmesh-agent --timeout=180s
fi
