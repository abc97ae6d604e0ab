package nats

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// drainTimeout bounds the cleanup Connect returns.
const drainTimeout = 10 * time.Second

// Connect dials NATS. The connection reconnects forever, pausing
// cfg.ReconnectWait between attempts, and logs every disconnect and
// reconnect. The returned cleanup drains the connection (subscriptions
// finish the messages they hold, pending publishes are flushed) and closes
// it; call it once every subscription has stopped.
func Connect(cfg Config, log *slog.Logger) (*nats.Conn, func(), error) {
	cfg = cfg.WithDefaults()
	closed := make(chan struct{})
	var closeOnce sync.Once
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.ReconnectWait),
		nats.DrainTimeout(drainTimeout),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			switch {
			case nc.IsClosed():
				// the closed handler logs it
			case err != nil:
				log.Warn("nats disconnected", "err", err)
			default:
				log.Warn("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			log.Info("nats connection closed")
			closeOnce.Do(func() { close(closed) })
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("nats asynchronous error", "subject", subject, "err", err)
		}),
	}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats %s: %w", redactURL(cfg.URL), err)
	}
	log.Info("nats connected", "url", nc.ConnectedUrlRedacted(), "name", cfg.Name)
	cleanup := func() {
		if err := nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			log.Warn("nats drain", "err", err)
			nc.Close()
		}
		select {
		case <-closed:
		case <-time.After(drainTimeout + time.Second):
			nc.Close()
		}
	}
	return nc, cleanup, nil
}

// redactURL hides the password or token of every URL in a comma-separated
// list, for logs and errors.
func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		u, err := url.Parse(p)
		if err != nil {
			if strings.Contains(p, "@") {
				parts[i] = "<unparsable url>"
			}
			continue
		}
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			} else {
				u.User = url.User("xxxxx") // a bare token
			}
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
