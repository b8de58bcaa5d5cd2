package watcher

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
)

// Event rate limits. Verdict Events are already deduplicated (one per change
// of a verdict), so they are bounded by edits times policies. client-go's
// defaults — 25 Events per ConfigMap and type, then one per 5 minutes — would
// silently drop the verdicts of a ConfigMap with many policies (every policy
// is reported again when the control plane starts) or of a burst of edits.
const (
	eventBurst = 1000
	eventQPS   = 10
)

// NewEventBroadcaster returns a broadcaster that lets every distinct verdict
// through as its own Event. By default client-go folds more than 10 Events
// of one reason on one object within 10 minutes into a single "(combined
// from similar events)" Event, which would hide all but the latest rejected
// policy of a ConfigMap; keying the aggregation by message keeps them apart,
// while a repeated identical message still only bumps its Event's count.
func NewEventBroadcaster() record.EventBroadcaster {
	return record.NewBroadcaster(record.WithCorrelatorOptions(record.CorrelatorOptions{
		BurstSize: eventBurst,
		QPS:       eventQPS,
		KeyFunc:   aggregateByMessage,
	}))
}

// aggregateByMessage is a record.EventAggregatorKeyFunc under which only
// Events with the same message aggregate.
func aggregateByMessage(e *corev1.Event) (aggregateKey, localKey string) {
	aggregateKey, _ = record.EventAggregatorByReasonFunc(e)
	return aggregateKey + "\x00" + e.Message, e.Message
}
