package slacktest

// Redeliver sends an envelope again, acknowledged or not, with the next
// retry_attempt, as Slack does when an ack was lost on the way: the app
// must recognise the envelope_id and not act twice. Unknown IDs are
// ignored.
func (s *Server) Redeliver(envelopeID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.envelopes[envelopeID]
	if !ok {
		return
	}
	e.acked = false // as far as Slack knows, the ack never came
	e.retries++
	e.reason = "timeout"
	s.route(e)
}
