#!/usr/bin/env bash
# End to end on a kind cluster with the Helm chart: build and load the image, install the chart,
# run two sample MCPs, register them (examples/ plus one inline), wait for Ready, report
# interactions, query metrics and a route, delete, and tear down. Prints every check it makes.
# Needs docker (BuildKit), kind, helm 4, kubectl and curl (`make tools` installs helm and kubectl
# into .tools/bin, which comes first on PATH here). KEEP_CLUSTER=1 keeps the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PATH"
for tool in docker kind helm kubectl curl; do
  command -v "$tool" >/dev/null || { echo "e2e needs $tool on PATH" >&2; exit 1; }
done
case "$(helm version --short)" in
  v4.*) ;;
  *) echo "e2e needs helm 4 (found $(helm version --short)); run make tools" >&2; exit 1 ;;
esac
CLUSTER=${CLUSTER:-mcp-coordinator-e2e}
NS=mcp-coordinator
IMAGE=mcp-coordinator:e2e
checked() { printf 'checked: %s\n' "$*"; }
cleanup() {
  [ -n "${PORT_FORWARD_PID:-}" ] && kill "$PORT_FORWARD_PID" 2>/dev/null || true
  [ "${KEEP_CLUSTER:-}" = 1 ] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "==> kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --wait 120s

echo "==> image $IMAGE"
DOCKER_BUILDKIT=1 docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

echo "==> helm install"
helm install mcp-coordinator charts/mcp-coordinator --namespace "$NS" --create-namespace \
  --set image.repository=mcp-coordinator --set image.tag=e2e --set image.pullPolicy=Never \
  --set controller.routingIntervalSeconds=5 --wait --timeout 180s
kubectl -n "$NS" rollout status statefulset/mcp-coordinator --timeout=120s
checked "the chart installs and both containers become ready"
helm test mcp-coordinator --namespace "$NS" --timeout 120s
checked "helm test: both containers answer /readyz"
KEYS_BEFORE=$(kubectl -n "$NS" get secret mcp-coordinator-keys -o jsonpath='{.data}')
helm upgrade mcp-coordinator charts/mcp-coordinator --namespace "$NS" --reuse-values \
  --set podAnnotations.upgraded=yes --wait --timeout 180s
[ "$(kubectl -n "$NS" get secret mcp-coordinator-keys -o jsonpath='{.data}')" = "$KEYS_BEFORE" ] \
  || { echo "helm upgrade changed the privacy/encryption keys" >&2; exit 1; }
checked "helm upgrade keeps the keys"

echo "==> two sample MCPs (http-echo answers 200 on every path)"
for name in ocr-workflow ocr-backup; do
  kubectl -n default create deployment "$name" --image=hashicorp/http-echo:1.0 -- /http-echo -listen=:8080 -text=ok
  kubectl -n default expose deployment "$name" --port=8080
done
kubectl -n default rollout status deployment/ocr-workflow --timeout=120s
kubectl -n default rollout status deployment/ocr-backup --timeout=120s

echo "==> registrations"
kubectl apply -f examples/ocr-workflow.yaml -f examples/model-adapter.yaml
sed -e 's/name: ocr-workflow$/name: ocr-backup/' -e 's/app.kubernetes.io\/name: ocr-workflow/app.kubernetes.io\/name: ocr-backup/' \
  examples/ocr-workflow.yaml | kubectl apply -f -
for name in ocr-workflow ocr-backup; do
  kubectl -n default wait --for=jsonpath='{.status.phase}'=Ready "mcpcreg/$name" --timeout=120s
done
kubectl get mcpcreg -A
checked "registrations get IDs and turn Ready"
ID=$(kubectl -n default get mcpcreg ocr-workflow -o jsonpath='{.status.mcpId}')
KEY=$(kubectl -n default get secret ocr-workflow-mcp-key -o jsonpath='{.data.api-key}' | base64 -d)
READER=$(kubectl -n "$NS" get secret mcp-coordinator-reader-token -o jsonpath='{.data.token}' | base64 -d)
kubectl -n default get configmap mcp-routing-table -o jsonpath='{.data.routing-table\.json}' | grep -q "$ID"
checked "the routing-table ConfigMap lists $ID"

echo "==> reporting interactions"
kubectl -n "$NS" port-forward service/mcp-coordinator-ingest 18081:8081 >/dev/null 2>&1 &
PORT_FORWARD_PID=$!
for _ in $(seq 50); do curl -fsS localhost:18081/healthz >/dev/null 2>&1 && break; sleep 0.2; done
for n in $(seq 1 20); do
  INT=$(curl -fsS -X POST localhost:18081/v1/interactions -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d '{"request_data": {"request_type": "ocr_processing"}}' \
    | sed -E 's/.*"interaction_id":"([^"]+)".*/\1/')
  curl -fsS -X POST "localhost:18081/v1/interactions/$INT/complete" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d '{"success": true, "processing_time": 0.2}' >/dev/null
done
checked "20 interactions reported with the MCP's key"
for _ in $(seq 30); do
  COUNT=$(curl -fsS "localhost:18081/v1/mcps/$ID/metrics?range=1h" -H "Authorization: Bearer $READER" \
    | sed -E 's/.*"count":([0-9]+).*/\1/')
  [ "$COUNT" = 20 ] && break
  sleep 1
done
[ "$COUNT" = 20 ] || { echo "metrics show $COUNT interactions, expected 20" >&2; exit 1; }
checked "metrics of $ID count 20 interactions"
curl -fsS "localhost:18081/v1/route?capability=text_extraction" -H "Authorization: Bearer $READER" | grep -q '"mcp_id"'
checked "GET /v1/route answers an MCP for text_extraction"

echo "==> delete"
kubectl -n default delete mcpcreg ocr-workflow ocr-backup --wait --timeout=60s
if kubectl -n default get secret ocr-workflow-mcp-key >/dev/null 2>&1; then
  echo "the key Secret outlived its registration" >&2; exit 1
fi
checked "deleting a registration removes its key Secret"
helm uninstall mcp-coordinator --namespace "$NS" --wait
checked "helm uninstall"
kubectl get crd mcpregistrations.mcp.coordinator.dev >/dev/null
checked "the CRD stays after uninstall (crds.keep)"
echo "e2e passed"
