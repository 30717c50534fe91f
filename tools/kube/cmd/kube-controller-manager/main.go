// kube-controller-manager as Kubernetes builds it: the tests run its garbage collector (owned
// Secrets go with their registration), namespace deletion and ServiceAccount controllers.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
