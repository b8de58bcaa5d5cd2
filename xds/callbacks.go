package xds

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// callbacks connects go-control-plane's stream events to the Server's
// per-proxy state. go-control-plane calls them synchronously on each
// stream's goroutine.
type callbacks struct {
	s *Server
}

var _ serverv3.Callbacks = callbacks{}

func (c callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	c.s.openStream(ctx, streamKey{id: id})
	return nil
}

func (c callbacks) OnStreamClosed(id int64, _ *corev3.Node) {
	c.s.closeStream(streamKey{id: id})
}

func (c callbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	key := streamKey{id: id}
	if err := c.s.checkRequest(key, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), len(req.GetResourceNames())); err != nil {
		return err
	}
	if err := c.s.identifyStream(key, req.GetNode()); err != nil {
		return err
	}
	rejected, nacked := c.s.recordRequest(key, req.GetTypeUrl(), req.GetResponseNonce(), req.GetVersionInfo(), req.GetErrorDetail())
	if nacked {
		// A NACK's version_info is the last version the proxy accepted,
		// which differs from the snapshot's, so the cache would re-send the
		// rejected config at once, the proxy would reject it again, and so
		// on in a tight loop. Presenting the rejected version instead makes
		// the cache wait for the next snapshot change.
		req.VersionInfo = rejected
	}
	return nil
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	c.s.recordResponse(streamKey{id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

func (c callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	c.s.openStream(ctx, streamKey{delta: true, id: id})
	return nil
}

func (c callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.s.closeStream(streamKey{delta: true, id: id})
}

func (c callbacks) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	key := streamKey{delta: true, id: id}
	names := len(req.GetResourceNamesSubscribe()) + len(req.GetResourceNamesUnsubscribe()) + len(req.GetInitialResourceVersions())
	if err := c.s.checkRequest(key, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), names); err != nil {
		return err
	}
	if err := c.s.identifyStream(key, req.GetNode()); err != nil {
		return err
	}
	// Delta requests carry no version: an ACK acknowledges the version of
	// the response its nonce names. A delta NACK needs no rewriting: the
	// cache compares per-resource versions and re-sends nothing unchanged.
	c.s.recordRequest(key, req.GetTypeUrl(), req.GetResponseNonce(), "", req.GetErrorDetail())
	return nil
}

func (c callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	c.s.recordResponse(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

// OnFetchRequest refuses REST fetches. Register serves no REST endpoint,
// so this only guards against the xDS server being wired up elsewhere.
func (c callbacks) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error {
	return status.Error(codes.Unimplemented, "shadowplane serves xDS over ADS streams only")
}

// OnFetchResponse is never reached: OnFetchRequest refuses every fetch.
func (c callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}
