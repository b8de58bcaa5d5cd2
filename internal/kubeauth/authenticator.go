// Package kubeauth verifies who an xDS client is, from Kubernetes: it checks a
// projected ServiceAccount token with the TokenReview API and reads the Pod
// the token was issued for. Nothing a client claims about itself is trusted
// until it matches what this package verified.
package kubeauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/lru"
)

// DefaultAudience is the audience a sidecar's projected token must carry,
// so a token minted for another service cannot be replayed here.
const DefaultAudience = "shadowplane"

// Extra keys the API server adds to a bound (projected) ServiceAccount token.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// Defaults for Options.
const (
	DefaultCacheTTL  = 5 * time.Minute
	DefaultCacheSize = 4096
	// MaxTokenBytes bounds a presented token; real projected tokens are
	// about 1 KiB.
	MaxTokenBytes = 8 << 10
)

// ErrUnauthenticated is wrapped by every error that means "this token does
// not prove an identity"; anything else is the API server failing.
var ErrUnauthenticated = errors.New("unauthenticated")

// Identity is what the API server vouched for: the ServiceAccount a token
// belongs to and the Pod it was bound to.
type Identity struct {
	Namespace      string
	ServiceAccount string
	PodName        string
	PodUID         string
}

func (id Identity) String() string {
	return fmt.Sprintf("system:serviceaccount:%s:%s (pod %s)", id.Namespace, id.ServiceAccount, id.PodName)
}

// Options configure an Authenticator.
type Options struct {
	Client kubernetes.Interface
	// Audience the token must be issued for (default DefaultAudience).
	Audience string
	// CacheTTL caps how long a verdict is reused (default 5 minutes); a
	// token's own expiry shortens it.
	CacheTTL time.Duration
	// CacheSize bounds the number of cached verdicts (default 4096).
	CacheSize int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Authenticator checks bearer tokens with TokenReview and caches verdicts by
// the token's SHA-256, so a reconnecting fleet does not flood the API server.
type Authenticator struct {
	client   kubernetes.Interface
	audience string
	ttl      time.Duration
	now      func() time.Time
	cache    *lru.Cache
}

type cachedVerdict struct {
	identity Identity
	err      error
	expires  time.Time
}

// New builds an Authenticator.
func New(opts Options) *Authenticator {
	a := &Authenticator{
		client:   opts.Client,
		audience: opts.Audience,
		ttl:      opts.CacheTTL,
		now:      opts.Now,
	}
	if a.audience == "" {
		a.audience = DefaultAudience
	}
	if a.ttl <= 0 {
		a.ttl = DefaultCacheTTL
	}
	if a.now == nil {
		a.now = time.Now
	}
	size := opts.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	a.cache = lru.New(size)
	return a
}

// Audience is the audience tokens must carry.
func (a *Authenticator) Audience() string { return a.audience }

// Authenticate returns the verified identity behind token. An error wrapping
// ErrUnauthenticated means the token proves nothing; other errors mean the
// API server could not be asked (the client should retry).
func (a *Authenticator) Authenticate(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	if len(token) > MaxTokenBytes {
		return Identity{}, fmt.Errorf("%w: token of %d bytes is longer than %d", ErrUnauthenticated, len(token), MaxTokenBytes)
	}
	sum := sha256.Sum256([]byte(token))
	key := string(sum[:])
	now := a.now()
	if v, ok := a.cache.Get(key); ok {
		c := v.(cachedVerdict)
		if now.Before(c.expires) {
			return c.identity, c.err
		}
		a.cache.Remove(key)
	}

	id, err := a.review(ctx, token)
	if err != nil && !errors.Is(err, ErrUnauthenticated) {
		// Transient: never cache an API failure.
		return Identity{}, err
	}
	expires := now.Add(a.ttl)
	if exp, ok := tokenExpiry(token); ok && exp.Before(expires) {
		expires = exp
	}
	if err != nil {
		// A refusal is cached briefly, so a client hammering with a bad
		// token costs one TokenReview per few seconds, not one per try.
		expires = now.Add(min(a.ttl, 10*time.Second))
	}
	a.cache.Add(key, cachedVerdict{identity: id, err: err, expires: expires})
	return id, err
}

func (a *Authenticator) review(ctx context.Context, token string) (Identity, error) {
	tr, err := a.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{a.audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return Identity{}, fmt.Errorf("TokenReview: %w", err)
	}
	return identityFromStatus(tr.Status, a.audience)
}

// identityFromStatus accepts only a bound ServiceAccount token for the
// audience: a user's token, a legacy Secret-based token (no pod extras) or a
// token for another audience proves nothing here.
func identityFromStatus(st authnv1.TokenReviewStatus, audience string) (Identity, error) {
	if !st.Authenticated {
		why := st.Error
		if why == "" {
			why = "the API server did not authenticate it"
		}
		return Identity{}, fmt.Errorf("%w: token rejected: %s", ErrUnauthenticated, why)
	}
	if !slices.Contains(st.Audiences, audience) {
		return Identity{}, fmt.Errorf("%w: token is not for audience %q (it is for %v)", ErrUnauthenticated, audience, st.Audiences)
	}
	parts := strings.Split(st.User.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" || parts[2] == "" || parts[3] == "" {
		return Identity{}, fmt.Errorf("%w: %q is not a ServiceAccount", ErrUnauthenticated, st.User.Username)
	}
	if !slices.Contains(st.User.Groups, "system:serviceaccounts") {
		return Identity{}, fmt.Errorf("%w: %q is not in group system:serviceaccounts", ErrUnauthenticated, st.User.Username)
	}
	podName, podUID := single(st.User.Extra[extraPodName]), single(st.User.Extra[extraPodUID])
	if podName == "" || podUID == "" {
		return Identity{}, fmt.Errorf("%w: the token of %q is not bound to a pod; mount a projected ServiceAccount token (audience %q)",
			ErrUnauthenticated, st.User.Username, audience)
	}
	return Identity{Namespace: parts[2], ServiceAccount: parts[3], PodName: podName, PodUID: podUID}, nil
}

func single(v authnv1.ExtraValue) string {
	if len(v) != 1 {
		return ""
	}
	return v[0]
}

// tokenExpiry reads the exp claim of a JWT without verifying it: it only
// shortens a cache entry for a token the API server has already accepted.
func tokenExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(claims.Exp, 0), true
}
