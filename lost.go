package hbrbot

// BatchIndex is what is kept of a batch apart from its own keys, with no
// expiry, so that work finding the batch gone can still say where it
// reported and which IDs must be checked by hand.
type BatchIndex struct {
	RequestID string  `json:"request_id"`
	ChannelID string  `json:"channel_id"`
	ThreadTS  string  `json:"thread_ts"`
	Index     int     `json:"index"`
	Of        int     `json:"of"`
	Targets   Targets `json:"targets"`
}

// Key names the batch, as BatchStatus.Key.
func (i BatchIndex) Key() string { return BatchKey(i.RequestID, i.Index) }
