package translator

import (
	"fmt"
	"strings"

	"github.com/shadowplane/shadowplane/policy"
)

// CheckReferences checks a parsed policy against the World. A Service that
// does not exist (the policy's own or a mirror target) yields a Warning:
// the policy stays in force and takes effect when the Service appears. A
// Service that exists but lacks the referenced port, or has several ports
// and none was named, yields an error naming the ports it does have.
func CheckReferences(p *policy.Policy, w *World) []*policy.PolicyError {
	var errs []*policy.PolicyError
	report := func(field, msg string, warning bool) {
		errs = append(errs, &policy.PolicyError{
			Namespace: p.Namespace, ConfigMap: p.Source.ConfigMap, Key: p.Source.Key,
			Policy: p.Name, Index: p.Source.Index,
			Field: field, Message: msg, Warning: warning,
		})
	}
	own, ownPort, ownOK := resolveTarget(w, p.Namespace, p.Service, p.Port, "service", "port", report)
	if ownOK && !isTCPPort(ownPort) {
		report("port", fmt.Sprintf("port %s of Service %q is %s: only TCP ports carry HTTP", describeServicePort(ownPort), own, ownPort.Protocol), false)
	}
	for i, m := range p.Mirrors {
		if m.Service == "" {
			continue
		}
		path := fmt.Sprintf("mirrors[%d]", i)
		target, port, ok := resolveTarget(w, m.Namespace, m.Service, m.Port, path+".service", path+".port", report)
		if !ok {
			continue
		}
		if !isTCPPort(port) {
			report(path+".port", fmt.Sprintf("port %s of Service %q is %s: only TCP ports carry HTTP", describeServicePort(port), target, port.Protocol), false)
		}
		// Written differently (name vs number), a mirror can still resolve
		// to the policy's own port.
		if ownOK && target == own && port.Port == ownPort.Port {
			report(path, fmt.Sprintf("targets the policy's own Service %q and port %s, which would copy its requests back onto itself: mirror to another Service or port", own, describeServicePort(port)), false)
		}
	}
	checkRouteBackends(p, w, own, ownPort, ownOK, report)
	return errs
}

// resolveTarget finds a Service and one of its ports, reporting a missing
// Service as a warning and a missing or ambiguous port as an error.
func resolveTarget(w *World, namespace, name string, ref policy.PortRef, svcField, portField string,
	report func(field, msg string, warning bool)) (key string, port ServicePort, ok bool) {
	key = ServiceKey(namespace, name)
	svc := w.Service(namespace, name)
	if svc == nil {
		report(svcField, fmt.Sprintf("Service %q does not exist (yet): the policy stays in force and takes effect when the Service appears", key), true)
		return key, ServicePort{}, false
	}
	port, found := svc.Port(ref)
	switch {
	case found:
		return key, port, true
	case len(svc.Ports) == 0:
		report(portField, fmt.Sprintf("Service %q has no ports", key), false)
	case ref.IsZero():
		report(portField, fmt.Sprintf("Service %q has several ports (%s): name one with port", key, listServicePorts(svc.Ports)), false)
	default:
		report(portField, fmt.Sprintf("Service %q has no port %q; its ports are: %s", key, ref.String(), listServicePorts(svc.Ports)), false)
	}
	return key, ServicePort{}, false
}

func isTCPPort(p ServicePort) bool { return p.Protocol == "" || strings.EqualFold(p.Protocol, "TCP") }

// describeServicePort renders a Service port as "http (80)" or "80".
func describeServicePort(p ServicePort) string {
	if p.Name == "" {
		return fmt.Sprintf("%d", p.Port)
	}
	return fmt.Sprintf("%s (%d)", p.Name, p.Port)
}

func listServicePorts(ports []ServicePort) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = describeServicePort(p)
	}
	return strings.Join(parts, ", ")
}
