package main

import (
	"context"
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
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		// SAMPLES 0: every element of a collection (the audit stream, the
		// schedule), not an estimate from five.
		n, err := rdb.MemoryUsage(ctx, k, 0).Result()
		if err == redis.Nil {
			continue // expired since SCAN
		}
		if err != nil {
			return m, fmt.Errorf("MEMORY USAGE %s: %w", k, err)
		}
		c := keyClass(k)
		m.bytes[c] += n
		m.keys[c]++
	}
	if err := iter.Err(); err != nil {
		return m, fmt.Errorf("SCAN: %w", err)
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
