// Package deploy holds no code: it is the folder of Burnrate's deploy
// manifests (Dockerfile, Docker Compose, Kubernetes with kustomize, example
// config and policies). Its test, deploy_test.go, checks the manifests
// against each other, against the config loader and against the binary's
// subcommands, without Docker, kubectl or a network.
package deploy
