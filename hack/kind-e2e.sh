#!/usr/bin/env bash
# End-to-end on a real Kubernetes: a kind cluster (kind-config.yaml: 2 racks x 2 compute + 1 storage
# nodes), KubeVirt with software emulation, CDI, rackmesh built from this tree, then the acceptance
# scenarios that the sandbox tests run, against this cluster instead of the sandbox.
#
# NEEDS Docker, kind, kubectl and network access (KubeVirt/CDI release manifests from GitHub, their images
# and zookeeper:3.8 from public registries). It cannot run where there is no Docker engine (CI here).
#
# Environment:
#   KIND_CLUSTER_NAME   cluster name (default: rackmesh, as in kind-config.yaml)
#   KUBEVIRT_VERSION    KubeVirt release (default below); CDI_VERSION likewise
#   RACKMESH_E2E_CMD    the acceptance command (default: $PYTHON -m pytest tests/acceptance, the same
#                       scenarios the sandbox runs); it gets KUBECONFIG and RACKMESH_E2E_KUBECONFIG
#                       pointing at the kind cluster, and RACKMESH_E2E_SPARE_COMPUTE and
#                       RACKMESH_E2E_SPARE_STORAGE naming the two spare workers
# The scenarios need (tests/acceptance/conftest.py): lob123-rhel-6.0 on every storage node (one per
# rack), single-copy-image on exactly one, late-copy-image on that one and on the spare storage node,
# and the two spare workers (kind-config.yaml's rackmesh.io/e2e-spare label) that the scenarios label
# to add them to rackmesh; this script puts the images there and names the spares.
#   KEEP_CLUSTER=1      leave the cluster running afterwards (default: delete it, also on failure)
#   SKIP_BUILD=1        use rackmesh-operator:dev / rackmesh-agent:dev images already built
#   PYTHON              the Python that installs this tree's test dependencies and runs the scenarios
# Timeouts, sized for a real cluster (image pulls, CDI's import, a software-emulated boot), not the sandbox's:
#   RACKMESH_E2E_TIMEOUT        seconds for a request to converge (Ready, Stalled, its VMs gone); default 900
#   RACKMESH_E2E_HEAL_TIMEOUT   seconds for a deleted VM to come back; default 300
#   RACKMESH_E2E_TEST_TIMEOUT   seconds per scenario before pytest stops it; default 3600
# Sizes, for kind nodes that each report the whole host's cpu and memory (the scenarios fill them):
#   RACKMESH_E2E_SMALL_INSTANCETYPE  the scenarios' everyday VM; default u1.nano (1 vCPU, 512Mi)
#   RACKMESH_E2E_LARGE_INSTANCETYPE  the VM that fills the nodes in few; default u1.2xmedium (2 vCPU, 4Gi)
#
# Usage: hack/kind-e2e.sh [--dry-run]
#   --dry-run  print every command it would run (one per line, starting "+ "), run none, need nothing
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER=${KIND_CLUSTER_NAME:-rackmesh}
KUBEVIRT_VERSION=${KUBEVIRT_VERSION:-v1.5.0}
CDI_VERSION=${CDI_VERSION:-v1.61.0}
PYTHON=${PYTHON:-python3}
export RACKMESH_E2E_TIMEOUT=${RACKMESH_E2E_TIMEOUT:-900}
export RACKMESH_E2E_HEAL_TIMEOUT=${RACKMESH_E2E_HEAL_TIMEOUT:-300}
TEST_TIMEOUT=${RACKMESH_E2E_TEST_TIMEOUT:-3600}
export RACKMESH_E2E_SMALL_INSTANCETYPE=${RACKMESH_E2E_SMALL_INSTANCETYPE:-u1.nano}
export RACKMESH_E2E_LARGE_INSTANCETYPE=${RACKMESH_E2E_LARGE_INSTANCETYPE:-u1.2xmedium}
E2E_CMD=${RACKMESH_E2E_CMD:-$PYTHON -m pytest tests/acceptance --timeout=$TEST_TIMEOUT}
OPERATOR_IMAGE=rackmesh-operator:dev
AGENT_IMAGE=rackmesh-agent:dev

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;p}' "$0"; exit 0 ;;
    *) echo "kind-e2e: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "kind-e2e: $*" >&2; exit 1; }
step() { echo; echo "== $*"; }
# Every command that changes or reads the world goes through run (or query, for one whose output is used):
# a dry run prints it instead, and a query then stands for its answer with a <placeholder>.
run() {
  if ((DRY_RUN)); then printf '+'; printf ' %q' "$@"; echo; else "$@"; fi
}
query() {
  local placeholder=$1; shift
  if ((DRY_RUN)); then run "$@" >&2; echo "<$placeholder>"; else "$@"; fi
}
# A manifest on stdin, applied; a dry run names what it would apply.
apply_stdin() {
  if ((DRY_RUN)); then run kubectl apply -f - "# $1"; cat >/dev/null; else kubectl apply -f -; fi
}

if ((DRY_RUN)); then
  STATE=${RACKMESH_E2E_STATE:-<state-dir>}
else
  for tool in docker kind kubectl "$PYTHON"; do
    command -v "$tool" >/dev/null || die "needs '$tool' on PATH"
  done
  docker info >/dev/null 2>&1 || die "needs a running Docker engine"
  STATE=${RACKMESH_E2E_STATE:-$(mktemp -d -t rackmesh-kind.XXXXXX)}
fi
export KUBECONFIG=$STATE/kubeconfig

cleanup() {
  if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
    echo "kind-e2e: cluster '$CLUSTER' kept; KUBECONFIG=$KUBECONFIG"
  else
    run kind delete cluster --name "$CLUSTER" || true
  fi
}
trap cleanup EXIT

step "Python dependencies of the scenarios (this tree, with its test extras)"
run "$PYTHON" -m pip install -q -e "${ROOT}[test]"

step "kind cluster '$CLUSTER'"
if ! query "clusters" kind get clusters | grep -qx "$CLUSTER"; then
  run kind create cluster --name "$CLUSTER" --config "$ROOT/kind-config.yaml" --kubeconfig "$KUBECONFIG" --wait 180s
else
  run kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG"
fi

step "KubeVirt $KUBEVIRT_VERSION (software emulation)"
kv=https://github.com/kubevirt/kubevirt/releases/download/$KUBEVIRT_VERSION
run kubectl apply -f "$kv/kubevirt-operator.yaml"
run kubectl wait --for=condition=Established --timeout=120s crd/kubevirts.kubevirt.io
run kubectl apply -f "$kv/kubevirt-cr.yaml"
run kubectl -n kubevirt patch kubevirt kubevirt --type=merge \
  -p '{"spec":{"configuration":{"developerConfiguration":{"useEmulation":true}}}}'

step "CDI $CDI_VERSION"
cdi=https://github.com/kubevirt/containerized-data-importer/releases/download/$CDI_VERSION
run kubectl apply -f "$cdi/cdi-operator.yaml"
run kubectl wait --for=condition=Established --timeout=120s crd/cdis.cdi.kubevirt.io
run kubectl apply -f "$cdi/cdi-cr.yaml"

step "waiting for KubeVirt and CDI"
run kubectl -n kubevirt wait kubevirt/kubevirt --for=condition=Available --timeout=15m
run kubectl wait cdi/cdi --for=condition=Available --timeout=15m

step "u1 instancetypes"
# Recent KubeVirt deploys kubevirt/common-instancetypes itself; create the u1 series only if absent.
while read -r name cpus memory; do
  if ((DRY_RUN)) || ! kubectl get virtualmachineclusterinstancetype "$name" >/dev/null 2>&1; then
    apply_stdin "VirtualMachineClusterInstancetype $name" <<YAML
apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachineClusterInstancetype
metadata:
  name: $name
  labels: {instancetype.kubevirt.io/class: general.purpose}
spec:
  cpu: {guest: $cpus}
  memory: {guest: $memory}
YAML
  fi
done <<'LIST'
u1.nano 1 512Mi
u1.micro 1 1Gi
u1.small 1 2Gi
u1.medium 1 4Gi
u1.2xmedium 2 4Gi
u1.large 2 8Gi
u1.xlarge 4 16Gi
u1.2xlarge 8 32Gi
LIST

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  step "images"
  run docker build -f "$ROOT/images/operator/Dockerfile" -t "$OPERATOR_IMAGE" "$ROOT"
  run docker build -f "$ROOT/images/agent/Dockerfile" -t "$AGENT_IMAGE" "$ROOT"
fi
run kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$AGENT_IMAGE"

step "image copies on the storage nodes"
# Small raw disks in the agents' image store (the DaemonSet's hostPath); CDI imports them over HTTP
# from the agent that serves them. Every storage node holds lob123-rhel-6.0; the first one also holds
# single-copy-image and late-copy-image; the spare storage node holds late-copy-image before it joins.
first=1
spare_storage=$(query spare-storage-node kubectl get nodes -l rackmesh.io/e2e-spare=storage \
  -o jsonpath='{.items[0].metadata.name}')
spare_compute=$(query spare-compute-node kubectl get nodes -l rackmesh.io/e2e-spare=compute \
  -o jsonpath='{.items[0].metadata.name}')
storage_nodes=$(query storage-nodes kubectl get nodes -l rackmesh.io/role-storage=true \
  -o jsonpath='{.items[*].metadata.name}')
for node in $storage_nodes "$spare_storage"; do
  images=lob123-rhel-6.0
  if [[ $node == "$spare_storage" ]]; then images=late-copy-image
  elif [[ $first == 1 ]]; then images="$images single-copy-image late-copy-image"; first=0; fi
  for image in $images; do
    run docker exec "$node" sh -c "mkdir -p /var/lib/rackmesh/images && \
      truncate -s 64M /var/lib/rackmesh/images/$image.img"
  done
done

step "rackmesh"
run "$ROOT/hack/install.sh" manifests/overlays/kind

step "acceptance scenarios: $E2E_CMD"
cd "$ROOT"
export RACKMESH_E2E_KUBECONFIG=$KUBECONFIG RACKMESH_E2E_SPARE_COMPUTE=$spare_compute
export RACKMESH_E2E_SPARE_STORAGE=$spare_storage
read -r -a e2e_argv <<<"$E2E_CMD"
run "${e2e_argv[@]}"
