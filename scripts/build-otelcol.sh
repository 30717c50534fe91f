#!/usr/bin/env bash
# Builds an OpenTelemetry Collector (OTLP receiver, batch processor, OTLP/HTTP exporter) from the
# collector's Go modules (tools/otelcol) into .tools/bin/otelcol-mcp-test, for the OTLP tests.
# Skips the build when the binary of this go.mod, go.sum and main.go is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=.tools/bin/otelcol-mcp-test
stamp=.tools/bin/otelcol.stamp
want="$(cat "$0" tools/otelcol/go.mod tools/otelcol/go.sum tools/otelcol/main.go | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$bin" ]; then
  echo "the OpenTelemetry Collector is built ($(grep 'collector/otelcol ' tools/otelcol/go.mod | awk '{print $NF}'))"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "go is required to build the OpenTelemetry Collector (Go 1.25 or newer)" >&2
  exit 1
fi
mkdir -p .tools/bin
start=$(date +%s)
(
  cd tools/otelcol
  GOFLAGS=-mod=readonly go build -trimpath -o "../../$bin" .
)
echo "$want" > "$stamp"
echo "built the OpenTelemetry Collector in $(( $(date +%s) - start )) s"
