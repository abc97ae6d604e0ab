package cephrbd

import (
	"context"
	"time"
)

// backoff paces a retry loop: the wait before the next try starts at
// first and doubles up to max. The loop itself is bounded by its context
// (see retryContext), never by a count of tries.
type backoff struct {
	next, max time.Duration
}

func newBackoff(first, max time.Duration) *backoff {
	return &backoff{next: first, max: max}
}

// wait sleeps for the next interval, or returns ctx's error if ctx ends
// first.
func (b *backoff) wait(ctx context.Context) error {
	if err := sleep(ctx, b.next); err != nil {
		return err
	}
	b.next = min(2*b.next, b.max)
	return nil
}

// sleep waits for d, or returns ctx's error if ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// maxReplyMargin caps replyMargin.
const maxReplyMargin = 5 * time.Second

// replyMargin is the part of the time left before a caller's deadline
// that a loop keeps back for its answer to reach the caller: a loop that
// used the whole deadline would lose the error saying what it waited for
// to the caller's own timeout. A tenth, at most maxReplyMargin.
func replyMargin(left time.Duration) time.Duration {
	return min(max(left, 0)/10, maxReplyMargin)
}

// retryContext bounds a retry loop by ctx's deadline less the reply
// margin, or by fallback from now when ctx has no deadline (a caller
// without one, such as a test, still gets an answer).
func retryContext(ctx context.Context, fallback time.Duration) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithTimeout(ctx, fallback)
	}
	return context.WithDeadline(ctx, deadline.Add(-replyMargin(time.Until(deadline))))
}
