package watcher

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
)

// TestEventBroadcasterKeepsEveryVerdict: many distinct verdicts on one
// ConfigMap each become their own Event (client-go's defaults would stop
// after 25 and fold the rest into one), and a repeated verdict bumps its
// Event's count.
func TestEventBroadcasterKeepsEveryVerdict(t *testing.T) {
	client := fake.NewClientset()
	b := NewEventBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer b.Shutdown()
	recorder := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: EventComponent})

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "mirror-policies", UID: "uid-1"}}
	const distinct = 60
	for i := 0; i < distinct; i++ {
		recorder.Event(cm, corev1.EventTypeWarning, ReasonPolicyRejected, fmt.Sprintf("policy p%d: mirrors[0].percent: bad", i))
	}
	for i := 0; i < 2; i++ {
		recorder.Event(cm, corev1.EventTypeWarning, ReasonPolicyRejected, "policy p0: mirrors[0].percent: bad")
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		events, err := client.CoreV1().Events("shop").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		byMessage := map[string]int32{}
		for _, e := range events.Items {
			if strings.Contains(e.Message, "combined from similar events") {
				t.Fatalf("verdicts were folded together: %q", e.Message)
			}
			byMessage[e.Message] = e.Count
		}
		if len(byMessage) == distinct && byMessage["policy p0: mirrors[0].percent: bad"] == 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d distinct Events (want %d) and count %d for the repeated one (want 3)",
				len(byMessage), distinct, byMessage["policy p0: mirrors[0].percent: bad"])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
