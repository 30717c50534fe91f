// kube-apiserver as Kubernetes builds it (cmd/kube-apiserver), for the tests that run the
// operator against a real API server on loopback.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
