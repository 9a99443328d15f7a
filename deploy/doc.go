// Package deploy holds hbrbot's deployment files: a Docker Compose file, the
// Kubernetes manifests under k8s/, a Helm chart under helm/hbrbot, alert
// rules (prometheus/) and a Grafana dashboard (grafana/), and the RAM policy
// the bot's Alibaba Cloud identity needs. It has no Go code; its tests check
// that the files agree with the bot: every environment variable they name is
// one the config package reads, ports and probe paths match the bot's
// defaults, the chart names exactly config.Variables (rendered with helm when
// it is on PATH), the rules and the dashboard query only metrics the bot
// exports, and the RAM policy allows exactly the HBR actions the bot calls.
package deploy
