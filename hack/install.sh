#!/usr/bin/env bash
# Install rackmesh into the cluster of the current kubectl context, in the order a real API server needs:
#   1. the CRDs (repository-root kustomization), then wait until they are Established;
#   2. the rackmesh-system namespace, rackmesh's CA (Secret rackmesh-ca: ca.crt + ca.key, the operator's
#      only; ConfigMap rackmesh-ca: ca.crt, for the agents) and ZooKeeper's certificate from it (Secret
#      rackmesh-zookeeper-tls) and the metrics scraper's (Secret rackmesh-metrics-scraper, for Prometheus'
#      ServiceMonitors of manifests/monitoring), made here with `rackmesh ca`, never committed, kept when they exist;
#   3. the workloads: manifests/default, or the kustomization given as $1 (e.g. manifests/overlays/kind);
#      then manifests/monitoring (the ServiceMonitors) if the Prometheus Operator's CRDs are there.
# Usage: hack/install.sh [KUSTOMIZATION_DIR] [--no-wait]
# Needs the rackmesh CLI (`pip install .`; else this tree's rackmesh package and `cryptography`), or RACKMESH.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBECTL=${KUBECTL:-kubectl}
NAMESPACE=rackmesh-system
CLUSTER_DOMAIN=${CLUSTER_DOMAIN:-cluster.local}
ZOOKEEPER_SERVERS=3
TARGET=manifests/default
WAIT=1
for arg in "$@"; do
  case "$arg" in
    --no-wait) WAIT=0 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) TARGET=$arg ;;
  esac
done
if [[ -z ${RACKMESH:-} ]]; then
  if command -v rackmesh >/dev/null 2>&1; then RACKMESH=rackmesh; else RACKMESH=rackmesh_from_tree; fi
fi
# This tree's CLI, with the tree *after* the standard library on the path (its operator/ folder would
# shadow the standard-library module `operator` as PYTHONPATH would put it first).
rackmesh_from_tree() {
  python3 -c 'import sys; sys.path.append(sys.argv.pop(1)); from rackmesh.cli import main; main()' "$ROOT" "$@"
}

# Keys exist only in this directory (mode 0700, removed on exit) and in the Secrets; nothing prints them.
# `apply --server-side` keeps no last-applied-configuration annotation (a copy of the key) on the Secrets.
umask 077
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
apply() { $KUBECTL apply --server-side --field-manager=rackmesh-install -f - >/dev/null; }
exists() { $KUBECTL -n "$NAMESPACE" get "$1" "$2" >/dev/null 2>&1; }

echo "== CRDs"
$KUBECTL apply -k "$ROOT"
$KUBECTL wait --for=condition=Established --timeout=120s \
  crd/deploymentrequests.rackmesh.io crd/clusterkopfpeerings.kopf.dev crd/kopfpeerings.kopf.dev

echo "== namespace"
$KUBECTL apply -f "$ROOT/manifests/base/namespace.yaml"

echo "== rackmesh CA (Secret and ConfigMap rackmesh-ca)"
mkdir -p "$WORK/ca"
if exists secret rackmesh-ca; then
  # Keep the CA: a new one would orphan every certificate it signed. Read it back for the steps below.
  $KUBECTL -n "$NAMESPACE" get secret rackmesh-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$WORK/ca/ca.crt"
  $KUBECTL -n "$NAMESPACE" get secret rackmesh-ca -o 'jsonpath={.data.ca\.key}' | base64 -d >"$WORK/ca/ca.key"
  echo "secret/rackmesh-ca kept"
else
  rmdir "$WORK/ca"
  $RACKMESH ca init --out "$WORK/ca" >/dev/null
  $KUBECTL -n "$NAMESPACE" create secret generic rackmesh-ca \
    --from-file=ca.crt="$WORK/ca/ca.crt" --from-file=ca.key="$WORK/ca/ca.key" --dry-run=client -o yaml | apply
  echo "secret/rackmesh-ca created"
fi
# The certificate alone, for the agents (and anyone who trusts rackmesh's components); always in step.
$KUBECTL -n "$NAMESPACE" create configmap rackmesh-ca --from-file=ca.crt="$WORK/ca/ca.crt" \
  --dry-run=client -o yaml | apply
echo "configmap/rackmesh-ca applied"

echo "== ZooKeeper's certificate (Secret rackmesh-zookeeper-tls)"
if exists secret rackmesh-zookeeper-tls; then
  echo "secret/rackmesh-zookeeper-tls kept"
else
  # Every name the servers are reached by: clients use zookeeper-N.zookeeper-headless.<ns>.svc
  # (RACKMESH_ZK_HOSTS), the quorum checks its peers' names, which reverse DNS gives with the cluster domain.
  hosts=()
  for ((i = 0; i < ZOOKEEPER_SERVERS; i++)); do
    hosts+=(--host "zookeeper-$i.zookeeper-headless.$NAMESPACE.svc"
            --host "zookeeper-$i.zookeeper-headless.$NAMESPACE.svc.$CLUSTER_DOMAIN")
  done
  hosts+=(--host "zookeeper.$NAMESPACE.svc" --host "zookeeper.$NAMESPACE.svc.$CLUSTER_DOMAIN")
  $RACKMESH ca issue-zookeeper --ca "$WORK/ca" --out "$WORK/zookeeper" "${hosts[@]}" >/dev/null
  $KUBECTL -n "$NAMESPACE" create secret generic rackmesh-zookeeper-tls \
    --from-file=tls.crt="$WORK/zookeeper/tls.crt" --from-file=tls.key="$WORK/zookeeper/tls.key" \
    --from-file=ca.crt="$WORK/zookeeper/ca.crt" --dry-run=client -o yaml | apply
  echo "secret/rackmesh-zookeeper-tls created"
fi

echo "== the metrics scraper's certificate (Secret rackmesh-metrics-scraper)"
if exists secret rackmesh-metrics-scraper; then
  echo "secret/rackmesh-metrics-scraper kept"
else
  # Valid for a year: to renew, delete the Secret and run this script again.
  $RACKMESH ca issue-scraper --ca "$WORK/ca" --out "$WORK/scraper" >/dev/null
  $KUBECTL -n "$NAMESPACE" create secret generic rackmesh-metrics-scraper \
    --from-file=tls.crt="$WORK/scraper/tls.crt" --from-file=tls.key="$WORK/scraper/tls.key" \
    --from-file=ca.crt="$WORK/scraper/ca.crt" --dry-run=client -o yaml | apply
  echo "secret/rackmesh-metrics-scraper created"
fi

echo "== workloads ($TARGET)"
$KUBECTL apply -k "$ROOT/$TARGET"
if $KUBECTL get crd servicemonitors.monitoring.coreos.com >/dev/null 2>&1; then
  echo "== ServiceMonitors (manifests/monitoring)"
  $KUBECTL apply -k "$ROOT/manifests/monitoring"
fi

if [[ $WAIT == 1 ]]; then
  echo "== waiting for rollouts"
  $KUBECTL -n "$NAMESPACE" rollout status statefulset/zookeeper --timeout=300s
  $KUBECTL -n "$NAMESPACE" rollout status deployment/rackmesh-operator --timeout=180s
  $KUBECTL -n "$NAMESPACE" rollout status daemonset/rackmesh-agent --timeout=180s
fi
