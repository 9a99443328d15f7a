// Package metrics exposes hbrbot's Prometheus metrics. Its Metrics type
// implements the small observer interfaces of the packages it measures
// (upgrade, hbr, bot), so none of them imports Prometheus.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are hbrbot's collectors.
type Metrics struct {
	commands     *prometheus.CounterVec
	refused      *prometheus.CounterVec
	clicks       *prometheus.CounterVec
	hbrCalls     *prometheus.CounterVec
	hbrLatency   *prometheus.HistogramVec
	jobs         *prometheus.CounterVec
	jobDuration  prometheus.Histogram
	reportLag    prometheus.Histogram
	slackCalls   *prometheus.CounterVec
	redisErrors  prometheus.Counter
	socketUp     prometheus.Gauge
	workInFlight prometheus.Gauge
	durable
}

// New registers the collectors on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hbrbot_commands_total",
			Help: "Slash commands by outcome (accepted, refused, help, status)."}, []string{"outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hbrbot_commands_refused_total",
			Help: "Refused slash commands by rule (organisation, shared_channel, guests, user_commands, regions, input:..., ...)."}, []string{"rule"}),
		clicks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hbrbot_clicks_total",
			Help: "Card button clicks by result (approval_recorded, approved, cancelled, refused, already_decided)."}, []string{"result"}),
		hbrCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hbrbot_hbr_calls_total",
			Help: "HBR API call attempts by action and error code (\"\" = success)."}, []string{"action", "code"}),
		hbrLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hbrbot_hbr_call_duration_seconds",
			Help: "HBR API call attempt latency.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}, []string{"action"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hbrbot_jobs_finished_total",
			Help: "HBR jobs (batches) reported, by how they ended."}, []string{"final"}),
		jobDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hbrbot_job_duration_seconds",
			Help: "From UpgradeBackupClients to the job's end.", Buckets: prometheus.ExponentialBuckets(5, 2, 10)}),
		reportLag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hbrbot_report_lag_seconds",
			Help: "From the poll that saw a job end to its final report in Slack.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 12)}),
		slackCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hbrbot_slack_calls_total",
			Help: "Slack Web API calls by method and result (ok, ratelimited, error)."}, []string{"method", "result"}),
		redisErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "hbrbot_redis_errors_total",
			Help: "Failed Redis operations of the work loop."}),
		socketUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hbrbot_socket_mode_connected",
			Help: "1 while the Socket Mode connection is up."}),
		workInFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hbrbot_work_in_flight",
			Help: "Work items (job steps, card updates) this replica is running."}),
	}
	reg.MustRegister(m.commands, m.refused, m.clicks, m.hbrCalls, m.hbrLatency, m.jobs, m.jobDuration, m.reportLag,
		m.slackCalls, m.redisErrors, m.socketUp, m.workInFlight)
	m.registerDurable(reg)
	return m
}

// Command counts a slash command.
func (m *Metrics) Command(outcome string) { m.commands.WithLabelValues(outcome).Inc() }

// CommandRefused counts a refused command by the rule that refused it.
func (m *Metrics) CommandRefused(rule string) { m.refused.WithLabelValues(rule).Inc() }

// Click counts a button click.
func (m *Metrics) Click(result string) { m.clicks.WithLabelValues(result).Inc() }

// HBRCall records one call attempt.
func (m *Metrics) HBRCall(action, code string, d time.Duration) {
	m.hbrCalls.WithLabelValues(action, code).Inc()
	m.hbrLatency.WithLabelValues(action).Observe(d.Seconds())
}

// JobFinished records a reported job.
func (m *Metrics) JobFinished(final string, duration, reportLag time.Duration) {
	m.jobs.WithLabelValues(final).Inc()
	if duration > 0 {
		m.jobDuration.Observe(duration.Seconds())
	}
	if reportLag >= 0 {
		m.reportLag.Observe(reportLag.Seconds())
	}
}

// SlackCall counts a Web API call.
func (m *Metrics) SlackCall(method, result string) {
	m.slackCalls.WithLabelValues(method, result).Inc()
}

// RedisError counts a failed Redis operation.
func (m *Metrics) RedisError() { m.redisErrors.Inc() }

// SocketConnected sets the Socket Mode connection state.
func (m *Metrics) SocketConnected(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.socketUp.Set(v)
}

// WorkStarted and WorkDone track the work in flight.
func (m *Metrics) WorkStarted() { m.workInFlight.Inc() }
func (m *Metrics) WorkDone()    { m.workInFlight.Dec() }
