package botproc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Metrics is a scrape of /metrics: each series, as the Prometheus text
// format writes it (name{label="value",...}), with its value.
type Metrics map[string]float64

// Sum adds up every series of the metric name, whatever its labels.
func (m Metrics) Sum(name string) float64 {
	var s float64
	for series, v := range m {
		if series == name || strings.HasPrefix(series, name+"{") {
			s += v
		}
	}
	return s
}

// Mismatches lists the series of want whose value m does not have, with
// the value it has, sorted.
func (m Metrics) Mismatches(want Metrics) []string {
	var out []string
	for _, series := range slices.Sorted(maps.Keys(want)) {
		got, ok := m[series]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: absent, want %v", series, want[series]))
		case got != want[series]:
			out = append(out, fmt.Sprintf("%s = %v, want %v", series, got, want[series]))
		}
	}
	return out
}

// ReadMetrics scrapes http://addr/metrics.
func ReadMetrics(ctx context.Context, addr string) (Metrics, error) {
	a, err := get(ctx, "http://"+addr+"/metrics")
	if err != nil {
		return nil, err
	}
	if a.status != 200 {
		return nil, fmt.Errorf("/metrics: %d", a.status)
	}
	return ParseMetrics(string(a.body))
}

// ParseMetrics reads the Prometheus text format.
func ParseMetrics(text string) (Metrics, error) {
	m := Metrics{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexByte(line, ' ')
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			end = i + 1
		}
		if end <= 0 || end >= len(line) {
			return nil, fmt.Errorf("metrics line %q", line)
		}
		fields := strings.Fields(line[end:])
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics line %q has no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		m[line[:end]] = v
	}
	return m, nil
}

// AwaitMetrics scrapes http://addr/metrics until every series of want has
// its value, and returns that scrape. It gives up when ctx ends or
// ReadyTimeout passes, naming what differs.
func AwaitMetrics(ctx context.Context, addr string, want Metrics) (Metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	last := errors.New("no scrape")
	for {
		m, err := ReadMetrics(ctx, addr)
		switch {
		case err == nil:
			bad := m.Mismatches(want)
			if len(bad) == 0 {
				return m, nil
			}
			last = errors.New(strings.Join(bad, "; "))
		case ctx.Err() == nil: // not the wait's own end cutting the scrape short
			last = err
		}
		select {
		case <-ctx.Done():
			return m, fmt.Errorf("metrics of %s: %w: %v", addr, ctx.Err(), last)
		case <-tick.C:
		}
	}
}
