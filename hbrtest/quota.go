package hbrtest

import (
	"net/http"
	"time"
)

// QuotaWindow is the window of WithQuota's flow control: HBR's quotas are
// "600/60(s)", per region, API and account.
const QuotaWindow = time.Minute

// WithQuota enforces HBR's flow control: each action accepts at most
// perActionPerMinute authenticated calls in any rolling minute (by the
// server's clock, see SetNow); a call beyond is answered 400
// Throttling.User, as HBR does, and does no work. Refused calls do not
// count against the quota (fake's choice: Alibaba documents only the
// limit). 0, the default, is no limit.
func WithQuota(perActionPerMinute int) Option {
	return func(c *config) { c.quota = perActionPerMinute }
}

// overQuotaLocked reports whether a call of action at now exceeds the
// quota, and counts it when it does not. Caller holds s.mu.
func (s *Server) overQuotaLocked(action string, now time.Time) bool {
	if s.cfg.quota <= 0 {
		return false
	}
	if s.admitted == nil {
		s.admitted = map[string][]time.Time{}
	}
	times := s.admitted[action]
	cut := 0
	for cut < len(times) && !times[cut].After(now.Add(-QuotaWindow)) {
		cut++
	}
	times = times[cut:]
	if len(times) >= s.cfg.quota {
		s.admitted[action] = times
		return true
	}
	s.admitted[action] = append(times, now)
	return false
}

// Throttled counts the calls of action ("" = all) answered with a
// Throttling code, by the quota or by FailNext.
func (s *Server) Throttled(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if (action == "" || c.Action == action) && c.Status == http.StatusBadRequest && isThrottling(c.Code) {
			n++
		}
	}
	return n
}

func isThrottling(code string) bool {
	return code == CodeThrottling || code == CodeThrottlingUser || code == "Throttling.Api" || code == "Rejected.Throttling"
}
