#!/usr/bin/env bash
# Remove rackmesh's workloads (manifests/default, or the kustomization given as $1), the rackmesh-system
# namespace with them, and the objects hack/install.sh made there: the CA (Secret and ConfigMap rackmesh-ca)
# and ZooKeeper's certificate (Secret rackmesh-zookeeper-tls); a reinstall makes a new CA. With --crds also
# remove the CRDs, which DELETES EVERY DeploymentRequest (and, through their ownerReferences, every
# VirtualMachine rackmesh created).
# Usage: hack/uninstall.sh [KUSTOMIZATION_DIR] [--crds]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBECTL=${KUBECTL:-kubectl}
TARGET=manifests/default
CRDS=0
for arg in "$@"; do
  case "$arg" in
    --crds) CRDS=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) TARGET=$arg ;;
  esac
done

$KUBECTL -n rackmesh-system delete secret rackmesh-ca rackmesh-zookeeper-tls --ignore-not-found
$KUBECTL -n rackmesh-system delete configmap rackmesh-ca --ignore-not-found
$KUBECTL delete -k "$ROOT/$TARGET" --ignore-not-found
if [[ $CRDS == 1 ]]; then
  $KUBECTL delete -k "$ROOT" --ignore-not-found
fi
