package redisstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Timeouts that fail fast, so a caller hears of an outage within seconds.
const (
	dialTimeout = 2 * time.Second
	ioTimeout   = 2 * time.Second
)

// Connect makes the client for REDIS_URL in REDIS_MODE ("single",
// "sentinel" or "cluster"). An empty url starts an in-process Redis
// (miniredis) behind the same client: state is lost on exit, and replicas
// cannot share it. close releases the client (and the in-process server).
func Connect(url, mode string) (rdb redis.UniversalClient, embedded bool, close func(), err error) {
	if url == "" {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return nil, false, nil, fmt.Errorf("start in-process redis: %w", err)
		}
		c := redis.NewClient(&redis.Options{Addr: m.Addr()})
		return c, true, func() { c.Close(); m.Close() }, nil
	}
	// Parse errors name no part of the URL: it may hold a password.
	parseErr := errors.New("REDIS_URL: cannot parse")
	switch mode {
	case "sentinel":
		o, err := redis.ParseFailoverURL(url)
		if err != nil {
			return nil, false, nil, parseErr
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = dialTimeout, ioTimeout, ioTimeout
		rdb = redis.NewFailoverClient(o)
	case "cluster":
		o, err := redis.ParseClusterURL(url)
		if err != nil {
			return nil, false, nil, parseErr
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = dialTimeout, ioTimeout, ioTimeout
		rdb = redis.NewClusterClient(o)
	default:
		o, err := redis.ParseURL(url)
		if err != nil {
			return nil, false, nil, parseErr
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = dialTimeout, ioTimeout, ioTimeout
		rdb = redis.NewClient(o)
	}
	return rdb, false, func() { rdb.Close() }, nil
}
