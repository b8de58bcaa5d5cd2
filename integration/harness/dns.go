package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
)

// DNSServer answers A queries for a fixed set of names over UDP on
// 127.0.0.1, so that a sidecar can resolve URL-target names to the test
// address: inside the tests' network namespace the only names that resolve
// otherwise are loopback names, which the URL deny list refuses.
type DNSServer struct {
	Addr    string // 127.0.0.1:port
	conn    net.PacketConn
	records map[string]netip.Addr
	done    sync.WaitGroup
}

// StartDNS serves records (name → IPv4 address). Other names get NXDOMAIN;
// other query types for a known name get an empty answer.
func StartDNS(records map[string]string) (*DNSServer, error) {
	s := &DNSServer{records: map[string]netip.Addr{}}
	for name, ip := range records {
		addr, err := netip.ParseAddr(ip)
		if err != nil || !addr.Is4() {
			return nil, fmt.Errorf("dns record %s: %q is not an IPv4 address", name, ip)
		}
		s.records[strings.ToLower(strings.TrimSuffix(name, "."))] = addr
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("dns server: %w", err)
	}
	s.conn, s.Addr = conn, conn.LocalAddr().String()
	s.done.Add(1)
	go s.serve()
	return s, nil
}

// Stop closes the socket and waits for the server to end.
func (s *DNSServer) Stop() {
	s.conn.Close()
	s.done.Wait()
}

func (s *DNSServer) serve() {
	defer s.done.Done()
	buf := make([]byte, 512)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		if reply, err := s.answer(buf[:n]); err == nil {
			_, _ = s.conn.WriteTo(reply, from)
		}
	}
}

// DNS wire constants (RFC 1035).
const (
	dnsHeaderLen = 12
	dnsTypeA     = 1
	dnsClassIN   = 1
	dnsRcodeNX   = 3
)

// answer builds the reply to one query holding one question.
func (s *DNSServer) answer(query []byte) ([]byte, error) {
	if len(query) < dnsHeaderLen || binary.BigEndian.Uint16(query[4:]) != 1 {
		return nil, errors.New("want one question")
	}
	name, end, err := readDNSName(query, dnsHeaderLen)
	if err != nil || end+4 > len(query) {
		return nil, errors.New("bad question")
	}
	qtype := binary.BigEndian.Uint16(query[end:])
	question := query[dnsHeaderLen : end+4]

	addr, known := s.records[name]
	reply := make([]byte, dnsHeaderLen, dnsHeaderLen+len(question)+16)
	copy(reply, query[:2])                               // id
	flags := uint16(0x8000 | 0x0400 | 0x0080)            // response, authoritative, recursion available
	flags |= binary.BigEndian.Uint16(query[2:]) & 0x0100 // recursion desired, echoed
	if !known {
		flags |= dnsRcodeNX
	}
	binary.BigEndian.PutUint16(reply[2:], flags)
	binary.BigEndian.PutUint16(reply[4:], 1) // questions
	reply = append(reply, question...)
	if known && qtype == dnsTypeA {
		binary.BigEndian.PutUint16(reply[6:], 1)  // answers
		reply = append(reply, 0xc0, dnsHeaderLen) // the name, by pointer to the question
		reply = binary.BigEndian.AppendUint16(reply, dnsTypeA)
		reply = binary.BigEndian.AppendUint16(reply, dnsClassIN)
		reply = binary.BigEndian.AppendUint32(reply, 5) // TTL seconds
		reply = binary.BigEndian.AppendUint16(reply, 4)
		ip := addr.As4()
		reply = append(reply, ip[:]...)
	}
	return reply, nil
}

// readDNSName reads an uncompressed name at off and returns it lower-case
// and the offset after it.
func readDNSName(msg []byte, off int) (string, int, error) {
	var labels []string
	for {
		if off >= len(msg) {
			return "", 0, errors.New("name runs past the message")
		}
		n := int(msg[off])
		off++
		if n == 0 {
			return strings.ToLower(strings.Join(labels, ".")), off, nil
		}
		if n > 63 || off+n > len(msg) {
			return "", 0, errors.New("bad label")
		}
		labels = append(labels, string(msg[off:off+n]))
		off += n
	}
}
