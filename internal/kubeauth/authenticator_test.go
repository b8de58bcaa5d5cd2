package kubeauth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func boundStatus(username string, audiences ...string) authnv1.TokenReviewStatus {
	return authnv1.TokenReviewStatus{
		Authenticated: true,
		Audiences:     audiences,
		User: authnv1.UserInfo{
			Username: username,
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"},
			Extra: map[string]authnv1.ExtraValue{
				extraPodName: {"checkout-7d9f"},
				extraPodUID:  {"1111-2222"},
			},
		},
	}
}

func TestIdentityFromStatus(t *testing.T) {
	ok := boundStatus("system:serviceaccount:shop:checkout", "shadowplane")
	noExtras := ok
	noExtras.User.Extra = nil
	noGroup := ok
	noGroup.User.Groups = []string{"system:authenticated"}
	tests := []struct {
		name   string
		status authnv1.TokenReviewStatus
		want   Identity
		errHas string
	}{
		{"bound token", ok, Identity{Namespace: "shop", ServiceAccount: "checkout", PodName: "checkout-7d9f", PodUID: "1111-2222"}, ""},
		{"not authenticated", authnv1.TokenReviewStatus{Error: "token expired"}, Identity{}, "token expired"},
		{"other audience", boundStatus("system:serviceaccount:shop:checkout", "https://kubernetes.default.svc"), Identity{}, `not for audience "shadowplane"`},
		{"a user", boundStatus("alice", "shadowplane"), Identity{}, "is not a ServiceAccount"},
		{"malformed username", boundStatus("system:serviceaccount:shop", "shadowplane"), Identity{}, "is not a ServiceAccount"},
		{"legacy token without pod", noExtras, Identity{}, "not bound to a pod"},
		{"not in service account group", noGroup, Identity{}, "system:serviceaccounts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := identityFromStatus(tc.status, "shadowplane")
			if tc.errHas == "" {
				if err != nil || got != tc.want {
					t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("err = %v; want ErrUnauthenticated containing %q", err, tc.errHas)
			}
		})
	}
}

func fakeJWT(exp time.Time) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"exp":%d}`, exp.Unix())))
	return "eyJhbGciOiJSUzI1NiJ9." + payload + ".c2ln"
}

func TestAuthenticateCachesByTokenAndExpiry(t *testing.T) {
	client := fake.NewClientset()
	calls := 0
	client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		if tr.Spec.Token == "bad" {
			return true, &authnv1.TokenReview{Status: authnv1.TokenReviewStatus{Error: "invalid"}}, nil
		}
		if len(tr.Spec.Audiences) != 1 || tr.Spec.Audiences[0] != "shadowplane" {
			t.Errorf("audiences = %v", tr.Spec.Audiences)
		}
		return true, &authnv1.TokenReview{Status: boundStatus("system:serviceaccount:shop:checkout", "shadowplane")}, nil
	})
	now := time.Unix(1_000_000, 0)
	a := New(Options{Client: client, Now: func() time.Time { return now }})
	ctx := context.Background()

	short := fakeJWT(now.Add(time.Minute))
	for i := 0; i < 3; i++ {
		if _, err := a.Authenticate(ctx, short); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Fatalf("3 authentications of one token made %d TokenReviews, want 1", calls)
	}
	now = now.Add(61 * time.Second) // past the token's exp, before the 5 min TTL
	if _, err := a.Authenticate(ctx, short); err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Fatalf("after the token's expiry: %d TokenReviews, want 2 (the cache must not outlive exp)", calls)
	}

	for i := 0; i < 3; i++ {
		if _, err := a.Authenticate(ctx, "bad"); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("bad token: %v", err)
		}
	}
	if calls != 3 {
		t.Fatalf("a bad token repeated: %d TokenReviews in all, want 3 (refusals are cached briefly)", calls)
	}
	if _, err := a.Authenticate(ctx, strings.Repeat("x", MaxTokenBytes+1)); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("oversized token: %v", err)
	}
	if _, err := a.Authenticate(ctx, ""); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("empty token: %v", err)
	}
	if calls != 3 {
		t.Fatalf("oversized and empty tokens reached the API server (%d calls)", calls)
	}
}

func TestAuthenticateDoesNotCacheAPIFailures(t *testing.T) {
	client := fake.NewClientset()
	fail := true
	client.PrependReactor("create", "tokenreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		if fail {
			return true, nil, errors.New("apiserver down")
		}
		return true, &authnv1.TokenReview{Status: boundStatus("system:serviceaccount:shop:checkout", "shadowplane")}, nil
	})
	a := New(Options{Client: client})
	_, err := a.Authenticate(context.Background(), "tok")
	if err == nil || errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("API failure: err = %v, want a non-authentication error", err)
	}
	fail = false
	if _, err := a.Authenticate(context.Background(), "tok"); err != nil {
		t.Fatalf("after the API server recovered: %v", err)
	}
}
