package metrics

import "github.com/prometheus/client_golang/prometheus"

// durable counts what the exactly-once machinery notices.
type durable struct {
	stateLost    *prometheus.CounterVec
	intakeStored *prometheus.CounterVec
}

func (m *Metrics) registerDurable(reg prometheus.Registerer) {
	m.stateLost = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hbrbot_state_lost_total",
		Help: "Scheduled work whose request or batch was missing from Redis (evicted or deleted), by kind (request, batch, spec)."}, []string{"kind"})
	m.intakeStored = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hbrbot_intake_items_total",
		Help: "Commands and clicks stored before their ack, by result (stored, duplicate, unavailable, requeued)."}, []string{"result"})
	reg.MustRegister(m.stateLost, m.intakeStored)
}

// StateLost counts work found without its request or batch in Redis.
func (m *Metrics) StateLost(kind string) { m.stateLost.WithLabelValues(kind).Inc() }

// IntakeItem counts a command or click stored before its ack.
func (m *Metrics) IntakeItem(result string) { m.intakeStored.WithLabelValues(result).Inc() }
