package slacktest

import "sort"

// Methods lists, sorted and each once, every method called so far: Web
// API methods, apps.connections.open, "response_url" for webhook posts and
// "upload_url" for a file's bytes. It is what a client needs of Slack, e.g.
// to compare with an app's scopes.
func (s *Server) Methods() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.calls))
	for m, calls := range s.calls {
		if len(calls) > 0 {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}
