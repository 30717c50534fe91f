#!/usr/bin/env bash
# End-to-end run on a kind cluster: create a cluster, install the CRD, run the controller against
# it (from this checkout, outside the cluster), register an MCP, wait for Ready, delete it, tear down.
# Needs docker, kind and kubectl. The Helm-based install replaces the out-of-cluster controller
# once the chart exists.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in docker kind kubectl cargo; do
  command -v "$tool" >/dev/null || { echo "e2e needs $tool on PATH" >&2; exit 1; }
done
CLUSTER=${CLUSTER:-mcp-coordinator-e2e}
NS=mcp-coordinator
cleanup() {
  [ -n "${CONTROLLER_PID:-}" ] && kill "$CONTROLLER_PID" 2>/dev/null || true
  [ "${KEEP_CLUSTER:-}" = 1 ] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "==> creating kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --wait 120s
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -

echo "==> installing the CRD"
kubectl apply -f crds/mcpregistration.yaml
kubectl wait --for condition=established --timeout=60s crd/mcpregistrations.mcp.coordinator.dev

echo "==> deploying a sample MCP (nginx answers GET /health with 200 via its default page)"
kubectl -n default create deployment sample-mcp --image=nginx:stable --port=80
kubectl -n default expose deployment sample-mcp --port=80
kubectl -n default rollout status deployment/sample-mcp --timeout=120s

echo "==> starting the controller against the cluster"
cargo build --quiet --bin mcp-coordinator
./target/debug/mcp-coordinator controller --state-namespace "$NS" --metrics-addr 127.0.0.1:18080 &
CONTROLLER_PID=$!

# Out-of-cluster, Service DNS does not resolve, so point the registration at a port-forward.
kubectl -n default port-forward svc/sample-mcp 18081:80 >/dev/null &
PF_PID=$!
trap 'kill $PF_PID 2>/dev/null; cleanup' EXIT
sleep 2
cat <<YAML | kubectl apply -f -
apiVersion: mcp.coordinator.dev/v1alpha1
kind: MCPRegistration
metadata: {name: sample, namespace: default}
spec:
  version: 1.0.0
  type: tool
  capabilities: [demo]
  endpoint: {url: "http://127.0.0.1:18081"}
  paths: {healthCheck: /}
  healthCheck: {intervalSeconds: 2, timeoutSeconds: 1}
YAML

echo "==> waiting for Ready"
kubectl wait --for=jsonpath='{.status.phase}'=Ready --timeout=90s mcpreg/sample
kubectl get mcpreg
kubectl get secret sample-mcp-key -o jsonpath='{.metadata.labels}'; echo

echo "==> deleting"
kubectl delete mcpreg sample --wait --timeout=60s
! kubectl get secret sample-mcp-key >/dev/null 2>&1
echo "e2e passed: CRD established, MCP registered with ID and key, Ready, deleted and cleaned up"
