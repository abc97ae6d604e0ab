package ports

import "context"

// Message is one message delivered by a Bus.
type Message struct {
	Subject string
	Data    []byte
}

// Handler processes one message. Returning nil acknowledges it; returning
// an error asks for redelivery later (durable subscriptions) or drops it
// (plain subscriptions), so handlers must be idempotent.
type Handler func(ctx context.Context, msg Message) error

// Subscription is a running subscription.
type Subscription interface {
	// Stop ends the subscription and waits for a running handler to return.
	// Unacknowledged messages of a durable subscription stay queued.
	Stop() error
}

// Bus is a publish/subscribe message bus (NATS, or the in-memory fake).
type Bus interface {
	// Publish sends data on subject. It returns once the bus accepted it.
	Publish(ctx context.Context, subject string, data []byte) error

	// Subscribe delivers messages on subject to h, one at a time, until
	// Stop or ctx ends. A non-empty durable name makes the subscription
	// durable and shared: messages published while no subscriber with that
	// name runs are delivered later, each message goes to one subscriber of
	// the name, and a message whose handler failed is delivered again.
	Subscribe(ctx context.Context, subject, durable string, h Handler) (Subscription, error)
}
