package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/redis/go-redis/v9"
)

// keyClass names what a key holds, from its name: the part after
// "hbrbot:{h}:" up to the next ':' (req, batch, due, audit, env, ...).
func keyClass(key string) string {
	rest, ok := strings.CutPrefix(key, "hbrbot:{h}:")
	if !ok {
		return "other"
	}
	class, _, _ := strings.Cut(rest, ":")
	return class
}

// memoryByClass is MEMORY USAGE summed over every key, by class, and the
// number of keys of each.
type memoryByClass struct {
	bytes map[string]int64
	keys  map[string]int
}

func readMemoryByClass(ctx context.Context, rdb *redis.Client) (memoryByClass, error) {
	m := memoryByClass{bytes: map[string]int64{}, keys: map[string]int{}}
	var keys []string
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return m, fmt.Errorf("SCAN: %w", err)
	}
	// One round trip per thousand keys, not per key: 20,000 keys at 10,000
	// jobs.
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), 1000)]
		keys = keys[len(chunk):]
		cmds := make([]*redis.IntCmd, len(chunk))
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range chunk {
				// SAMPLES 0: every element of a collection (the audit
				// stream, the schedule), not an estimate from five.
				cmds[i] = p.MemoryUsage(ctx, k, 0)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return m, fmt.Errorf("MEMORY USAGE: %w", err)
		}
		for i, k := range chunk {
			n, err := cmds[i].Result()
			if errors.Is(err, redis.Nil) {
				continue // expired since SCAN
			}
			if err != nil {
				return m, fmt.Errorf("MEMORY USAGE %s: %w", k, err)
			}
			c := keyClass(k)
			m.bytes[c] += n
			m.keys[c]++
		}
	}
	return m, nil
}

// perJob formats each class's bytes per tracked job, largest first.
func (m memoryByClass) perJob(jobs int) string {
	if jobs <= 0 {
		return "n/a"
	}
	classes := make([]string, 0, len(m.bytes))
	for c := range m.bytes {
		classes = append(classes, c)
	}
	sort.Slice(classes, func(i, j int) bool { return m.bytes[classes[i]] > m.bytes[classes[j]] })
	var parts []string
	for _, c := range classes {
		parts = append(parts, fmt.Sprintf("%s %.0f B (%d keys)", c, float64(m.bytes[c])/float64(jobs), m.keys[c]))
	}
	return strings.Join(parts, ", ")
}

// total is the bytes of every class but those named.
func (m memoryByClass) total(except ...string) int64 {
	var n int64
	for c, b := range m.bytes {
		skip := false
		for _, e := range except {
			skip = skip || c == e
		}
		if !skip {
			n += b
		}
	}
	return n
}
