// Package deploy holds hbrbot's deployment files: a Docker Compose file, the
// Kubernetes manifests under k8s/, and the RAM policy the bot's Alibaba Cloud
// identity needs. It has no Go code; its test (deploy_test.go) checks that
// the files agree with the bot: every environment variable they name is one
// the config package reads, ports and probe paths match the bot's defaults,
// and the RAM policy allows exactly the HBR actions the bot calls.
package deploy
