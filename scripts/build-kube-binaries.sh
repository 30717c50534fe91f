#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and etcd from their Go modules (tools/kube: one
# k8s.io/kubernetes release, every staging module at its published twin) into .tools/bin, for the
# tests that run the operator against a real API server. Skips the build when the binaries of this
# go.mod and go.sum are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=.tools/bin
stamp="$bin/kube-binaries.stamp"
want="$(cat "$0" tools/kube/go.mod tools/kube/go.sum tools/kube/cmd/*/main.go | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
  && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/etcd" ]; then
  echo "kube-apiserver, kube-controller-manager and etcd are built ($(grep 'k8s.io/kubernetes v' tools/kube/go.mod | awk '{print $NF}'))"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "go is required to build the Kubernetes binaries (Go 1.24 or newer)" >&2
  exit 1
fi
mkdir -p "$bin"
start=$(date +%s)
# The version the binaries report (helm checks a chart's kubeVersion against it), as Kubernetes'
# own build stamps it.
version="$(awk '$1 == "k8s.io/kubernetes" { print $2 }' tools/kube/go.mod)"
major="$(echo "${version#v}" | cut -d. -f1)"
minor="$(echo "${version#v}" | cut -d. -f2)"
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
(
  cd tools/kube
  GOFLAGS=-mod=readonly go build -trimpath -ldflags "$ldflags" -o "../../$bin/" ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/etcd
)
echo "$want" > "$stamp"
echo "built kube-apiserver, kube-controller-manager and etcd in $(( $(date +%s) - start )) s"
