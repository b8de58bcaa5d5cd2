package webhook

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// CABundleInterval is how often KeepCABundle compares the configurations'
// caBundle with the CA file, which certgen may rotate.
const CABundleInterval = time.Minute

// KeepCABundle writes the CA bundle of caFile into every webhook of the
// MutatingWebhookConfiguration and the ValidatingWebhookConfiguration named
// name, now and every CABundleInterval, so the API server trusts the
// serving certificate certgen made (the chart cannot know the CA when it
// renders). A configuration that does not exist (webhooks off) is skipped.
func KeepCABundle(ctx context.Context, client kubernetes.Interface, name, caFile string, log hclog.Logger) error {
	for {
		if err := syncCABundle(ctx, client, name, caFile); err != nil {
			log.Warn("webhook caBundle not updated", "configuration", name, "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(CABundleInterval):
		}
	}
}

func syncCABundle(ctx context.Context, client kubernetes.Interface, name, caFile string) error {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("read CA: %w", err)
	}
	mutating := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if m, err := mutating.Get(ctx, name, metav1.GetOptions{}); err == nil {
		if setCABundle(ca, len(m.Webhooks), func(i int) *admissionregistrationv1.WebhookClientConfig { return &m.Webhooks[i].ClientConfig }) {
			if _, err := mutating.Update(ctx, m, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update MutatingWebhookConfiguration: %w", err)
			}
		}
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("get MutatingWebhookConfiguration: %w", err)
	}
	validating := client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if v, err := validating.Get(ctx, name, metav1.GetOptions{}); err == nil {
		if setCABundle(ca, len(v.Webhooks), func(i int) *admissionregistrationv1.WebhookClientConfig { return &v.Webhooks[i].ClientConfig }) {
			if _, err := validating.Update(ctx, v, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update ValidatingWebhookConfiguration: %w", err)
			}
		}
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("get ValidatingWebhookConfiguration: %w", err)
	}
	return nil
}

// setCABundle sets ca on each of n client configs and reports whether any
// changed.
func setCABundle(ca []byte, n int, config func(int) *admissionregistrationv1.WebhookClientConfig) bool {
	changed := false
	for i := 0; i < n; i++ {
		if c := config(i); !bytes.Equal(c.CABundle, ca) {
			c.CABundle, changed = ca, true
		}
	}
	return changed
}
