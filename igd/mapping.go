package igd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/portfwd/portfwd/upnp"
)

// DefaultMaxEntries is the default for Client.MaxEntries: one entry per
// port and protocol would be 131072, but no router holds more than a few
// thousand, and a walk that gets this far is a router that never says stop.
const DefaultMaxEntries = 65536

// listChunk is how many entries one GetListOfPortMappings call asks for.
// MiniUPnPd answers at most 1000 whatever is asked.
const listChunk = 1000

// maxRepeats is how many already-seen entries in a row end a
// GetGenericPortMappingEntry walk: some routers answer every index past the
// end with their last entry instead of a fault.
const maxRepeats = 3

func (c *Client) maxEntries() int {
	if c.MaxEntries > 0 {
		return c.MaxEntries
	}
	return DefaultMaxEntries
}

// ListPortMappings returns the router's whole mapping table. progress, when
// non-nil, is called with the number of entries read so far.
//
// On a version 2 service it asks GetListOfPortMappings for TCP and then UDP
// over ports 0-65535, in chunks, with NewManage=1 so that other hosts'
// entries are included. If that fails in any way (401, 606 for the
// manage flag, a listing that does not parse, ...), or on a version 1
// service, it walks GetGenericPortMappingEntry from index 0. An empty v2
// listing is checked against index 0 of the walk, because a router that
// embeds the list unescaped loses it in the SOAP layer.
//
// The walk ends normally at 713 (SpecifiedArrayIndexInvalid, the spec's
// answer), 714 or 402 (what DD-WRT and others answer instead), or any UPnP
// fault after the first entry. Any other stop returns the entries read so
// far with a *PartialError: a network error or timeout after the first
// entry, the context ending, the Client.MaxEntries cap, or a router that
// keeps answering with entries already seen. A fault at index 0 other than
// those three codes is returned as it is.
func (c *Client) ListPortMappings(ctx context.Context, progress func(n int)) ([]PortMapping, error) {
	// Counts never go backwards for the caller, even when a failed listing
	// is followed by the walk.
	reported := 0
	report := func(n int) {
		if n > reported && progress != nil {
			reported = n
			progress(n)
		}
	}
	if c.Version >= 2 {
		list, err := c.listV2(ctx, report)
		var pe *PartialError
		switch {
		case errors.As(err, &pe):
			return list, err
		case err == nil && len(list) > 0:
			return list, nil
		case err == nil:
			// Confirm the empty answer: a walk that finds an entry at
			// index 0 means the listing was wrong.
			if _, gerr := c.GetGenericPortMappingEntry(ctx, 0); gerr != nil {
				return nil, nil
			}
			c.logger().Debug("igd: GetListOfPortMappings returned nothing but the table is not empty; walking it instead",
				"control", c.ControlURL)
		case ctx.Err() != nil:
			return nil, &PartialError{Reason: "cancelled", Err: err}
		default:
			c.logger().Debug("igd: GetListOfPortMappings failed; walking GetGenericPortMappingEntry instead",
				"control", c.ControlURL, "err", err)
		}
	}
	return c.walk(ctx, report)
}

// listV2 reads the table with GetListOfPortMappings, chunk by chunk. Each
// chunk must make progress (a higher start port) and every entry must lie
// in the range asked for, or the router is ignoring the range and the
// loop stops, so it is bounded whatever the router answers.
func (c *Client) listV2(ctx context.Context, progress func(int)) ([]PortMapping, error) {
	var out []PortMapping
	seen := make(map[Key]bool)
	limit := c.maxEntries()
	for _, proto := range []string{TCP, UDP} {
		start := 0
		for start <= 65535 {
			chunk, err := c.GetListOfPortMappings(ctx, uint16(start), 65535, proto, true, listChunk)
			if err != nil {
				return nil, err
			}
			last, fresh := -1, 0
			for _, m := range chunk {
				if int(m.ExternalPort) < start || (m.Protocol != "" && m.Protocol != proto) {
					continue
				}
				if m.Protocol == "" {
					m.Protocol = proto
				}
				last = max(last, int(m.ExternalPort))
				if seen[m.Key()] {
					continue
				}
				seen[m.Key()] = true
				out = append(out, m)
				fresh++
			}
			if len(out) > limit {
				progress(limit)
				return out[:limit], &PartialError{Got: limit, Reason: fmt.Sprintf("stopped at the limit of %d entries", limit)}
			}
			if fresh > 0 {
				progress(len(out))
			}
			if last < 0 {
				break // nothing in the range asked for: the end
			}
			start = last + 1
		}
	}
	return out, nil
}

// isEndOfTable reports whether a GetGenericPortMappingEntry fault means
// "no entry at this index".
func isEndOfTable(code int) bool {
	switch code {
	case CodeSpecifiedArrayIndexInvalid, CodeNoSuchEntryInArray, CodeInvalidArgs:
		return true
	}
	return false
}

func (c *Client) walk(ctx context.Context, progress func(int)) ([]PortMapping, error) {
	limit := c.maxEntries()
	var out []PortMapping
	seen := make(map[Key]bool)
	repeats := 0
	for i := 0; ; i++ {
		if i >= limit {
			return out, &PartialError{Got: len(out), Reason: fmt.Sprintf("stopped at the limit of %d entries", limit)}
		}
		if err := ctx.Err(); err != nil {
			return out, &PartialError{Got: len(out), Reason: "cancelled", Err: err}
		}
		m, err := c.GetGenericPortMappingEntry(ctx, i)
		if err != nil {
			code := upnp.ErrorCode(err)
			switch {
			case isEndOfTable(code):
				return out, nil
			case (code != 0 || upnp.IsBareFault(err)) && i > 0:
				// Past the first entry, routers end the table with
				// assorted faults (501, 500-ish codes, 725 ..., or an
				// HTTP 500 without a UPnPError).
				c.logger().Debug("igd: mapping table walk ended by an unusual fault", "index", i, "err", err)
				return out, nil
			case i > 0:
				return out, &PartialError{Got: len(out), Reason: fmt.Sprintf("reading entry %d failed", i), Err: err}
			}
			return nil, err
		}
		if seen[m.Key()] {
			repeats++
			if repeats >= maxRepeats {
				return out, &PartialError{Got: len(out),
					Reason: fmt.Sprintf("the router kept answering index %d and up with entries already listed (%v) instead of ending its table", i-repeats+1, m.Key())}
			}
			continue
		}
		repeats = 0
		seen[m.Key()] = true
		out = append(out, m)
		progress(len(out))
	}
}

// AddOptions tunes AddMapping.
type AddOptions struct {
	// Any lets another external port be used when the one asked for is
	// taken.
	Any bool
	// Tries bounds how many other ports are tried one by one when Any is
	// set and the service cannot choose one itself (version 1); 0 means 16.
	Tries int
}

// addFunc is AddPortMapping or AddAnyPortMapping, returning the external
// port mapped.
type addFunc func(ctx context.Context, m PortMapping) (uint16, error)

func (c *Client) addPlain(ctx context.Context, m PortMapping) (uint16, error) {
	return m.ExternalPort, c.AddPortMapping(ctx, m)
}

// AddMapping creates m and returns the mapping actually made, whose
// external port and lease may differ from m's. An ExternalPort of 0 means
// the same as InternalPort. It copes with these refusals:
//
//   - 725 (OnlyPermanentLeasesSupported): retried with lease 0.
//   - 402 (InvalidArgs) with a non-zero lease: retried once with lease 0;
//     some routers reject any lease this way rather than with 725.
//   - 718 (ConflictInMappingEntry): the holder is looked up with
//     GetSpecificPortMappingEntry. If it is this very mapping (same internal
//     client and port), the router refused to renew it in place, as some
//     do, so it is deleted and added again (should that add fail, the
//     entry is gone, as it would have been when its lease ran out).
//     Otherwise, with opts.Any, a
//     version 2 service is asked for AddAnyPortMapping and a version 1
//     service is tried on the following ports (opts.Tries of them); without
//     it the result is a *ConflictError naming the holder.
//   - 729 (ConflictWithOtherMechanisms) with opts.Any: as 718.
//   - 724 (SamePortValuesRequired) with opts.Any: retried with the
//     external port equal to the internal one.
func (c *Client) AddMapping(ctx context.Context, m PortMapping, opts AddOptions) (PortMapping, error) {
	m.Protocol = normProto(m.Protocol)
	if m.InternalPort == 0 {
		return PortMapping{}, errors.New("igd: no internal port: give the port on the LAN host to forward to")
	}
	if m.ExternalPort == 0 {
		m.ExternalPort = m.InternalPort
	}
	got, err := c.addLeniently(ctx, m, c.addPlain)
	if err == nil {
		return got, nil
	}
	m = got // keeps a lease already lowered to 0
	switch code := upnp.ErrorCode(err); {
	case code == CodeConflictInMappingEntry:
		holder, herr := c.GetSpecificPortMappingEntry(ctx, m.RemoteHost, m.ExternalPort, m.Protocol)
		known, free := herr == nil, upnp.ErrorCode(herr) == CodeNoSuchEntryInArray
		if known && sameTarget(holder, m) {
			c.logger().Debug("igd: router refused to renew an existing mapping of this host; deleting and adding it again",
				"mapping", m.Key())
			if derr := c.DeletePortMapping(ctx, m.RemoteHost, m.ExternalPort, m.Protocol); derr == nil {
				return c.addLeniently(ctx, m, c.addPlain)
			}
		}
		if opts.Any {
			return c.addAny(ctx, m, opts, err)
		}
		return PortMapping{}, &ConflictError{Wanted: m, Holder: holder, HolderKnown: known, Free: free, Err: err}
	case code == CodeConflictWithOtherMechanisms && opts.Any:
		return c.addAny(ctx, m, opts, err)
	case code == CodeSamePortValuesRequired && opts.Any && m.ExternalPort != m.InternalPort:
		m.ExternalPort = m.InternalPort
		return c.addLeniently(ctx, m, c.addPlain)
	}
	return PortMapping{}, err
}

func sameTarget(a, b PortMapping) bool {
	return a.InternalClient == b.InternalClient && a.InternalPort == b.InternalPort
}

// addLeniently calls add and, if the router refuses the lease, calls it
// again with lease 0. It returns the mapping as last asked for, with the
// external port the router reports, also when it fails, so that the caller
// carries the lowered lease into further attempts.
func (c *Client) addLeniently(ctx context.Context, m PortMapping, add addFunc) (PortMapping, error) {
	port, err := add(ctx, m)
	code := upnp.ErrorCode(err)
	if err != nil && m.LeaseDuration != 0 && (code == CodeOnlyPermanentLeasesSupported || code == CodeInvalidArgs) {
		c.logger().Debug("igd: router refused the lease; asking for a permanent mapping",
			"mapping", m.Key(), "lease", m.LeaseDuration, "code", code)
		m.LeaseDuration = 0
		port, err = add(ctx, m)
	}
	if err != nil {
		return m, err
	}
	if port != 0 {
		m.ExternalPort = port
	}
	return m, nil
}

// addAny finds another external port for m after conflict, the router's
// refusal of m.ExternalPort.
func (c *Client) addAny(ctx context.Context, m PortMapping, opts AddOptions, conflict error) (PortMapping, error) {
	if c.Version >= 2 {
		got, err := c.addLeniently(ctx, m, c.AddAnyPortMapping)
		if err == nil {
			return got, nil
		}
		switch upnp.ErrorCode(err) {
		case CodeInvalidAction, CodeOptionalActionNotImplemented:
			c.logger().Debug("igd: AddAnyPortMapping not implemented; trying ports one by one", "err", err)
			m = got
		default:
			return PortMapping{}, err
		}
	}
	tries := opts.Tries
	if tries <= 0 {
		tries = 16
	}
	last := conflict
	port := m.ExternalPort
	for range tries {
		if err := ctx.Err(); err != nil {
			return PortMapping{}, err
		}
		port = nextPort(port)
		try := m
		try.ExternalPort = port
		got, err := c.addLeniently(ctx, try, c.addPlain)
		if err == nil {
			return got, nil
		}
		switch upnp.ErrorCode(err) {
		case CodeConflictInMappingEntry, CodeConflictWithOtherMechanisms:
			last = err
			m.LeaseDuration = got.LeaseDuration
		default:
			return PortMapping{}, err
		}
	}
	return PortMapping{}, fmt.Errorf("igd: port %d/%s and the %d ports after it are taken; ask for another port: %w",
		m.ExternalPort, m.Protocol, tries, last)
}

// nextPort is the port after p, wrapping from 65535 to 1024 so as to stay
// clear of well-known ports.
func nextPort(p uint16) uint16 {
	if p == 65535 {
		return 1024
	}
	return p + 1
}

// EditMapping replaces the mapping at old by m and returns the mapping
// made. It is atomic from the caller's view: if m cannot be made, the old
// mapping is left or put back, and the error is an *EditError saying which.
//
// It first reads the old entry with GetSpecificPortMappingEntry (an edit of
// a mapping that does not exist fails there). When the key (remote host,
// external port, protocol) changes, the new mapping is added before the
// old one is deleted, so nothing is lost if the router refuses it. When the
// key stays, the old entry is deleted and the new one added, because
// routers differ on whether AddPortMapping overwrites (and refuse with 718
// when the internal client changes); if that add fails, the old entry is
// added back.
func (c *Client) EditMapping(ctx context.Context, old Key, m PortMapping) (PortMapping, error) {
	old.Protocol = normProto(old.Protocol)
	m.Protocol = normProto(m.Protocol)
	if m.InternalPort == 0 {
		return PortMapping{}, errors.New("igd: no internal port: give the port on the LAN host to forward to")
	}
	if m.ExternalPort == 0 {
		m.ExternalPort = m.InternalPort
	}
	cur, err := c.GetSpecificPortMappingEntry(ctx, old.RemoteHost, old.ExternalPort, old.Protocol)
	if err != nil {
		return PortMapping{}, fmt.Errorf("igd: reading mapping %v before changing it: %w", old, err)
	}
	return c.ReplaceMapping(ctx, cur, m)
}

// ReplaceMapping is EditMapping for a caller that has just read the
// current entry cur (with GetSpecificPortMappingEntry, which fills in its
// key): it changes cur into m with the same guarantees, without reading
// the entry again.
func (c *Client) ReplaceMapping(ctx context.Context, cur, m PortMapping) (PortMapping, error) {
	old := cur.Key()
	old.Protocol = normProto(old.Protocol)
	m.Protocol = normProto(m.Protocol)
	if m.InternalPort == 0 {
		return PortMapping{}, errors.New("igd: no internal port: give the port on the LAN host to forward to")
	}
	if m.ExternalPort == 0 {
		m.ExternalPort = m.InternalPort
	}
	if m.Key() != old {
		got, err := c.addLeniently(ctx, m, c.addPlain)
		if err != nil {
			return PortMapping{}, &EditError{Old: cur, Err: c.explainConflict(ctx, got, err), Restored: true}
		}
		derr := c.DeletePortMapping(ctx, old.RemoteHost, old.ExternalPort, old.Protocol)
		if derr == nil || upnp.ErrorCode(derr) == CodeNoSuchEntryInArray {
			return got, nil
		}
		// The old entry stays; take the new one back so that the table
		// is as it was.
		if uerr := c.DeletePortMapping(ctx, got.RemoteHost, got.ExternalPort, got.Protocol); uerr != nil {
			return got, fmt.Errorf("igd: added %v but could not remove the old mapping %v (%v), nor take the new one back: %w",
				got.Key(), old, derr, uerr)
		}
		return PortMapping{}, &EditError{Old: cur, Err: fmt.Errorf("removing the old mapping: %w", derr), Restored: true}
	}
	if derr := c.DeletePortMapping(ctx, old.RemoteHost, old.ExternalPort, old.Protocol); derr != nil &&
		upnp.ErrorCode(derr) != CodeNoSuchEntryInArray {
		return PortMapping{}, &EditError{Old: cur, Err: fmt.Errorf("removing the old mapping: %w", derr), Restored: true}
	}
	got, err := c.addLeniently(ctx, m, c.addPlain)
	if err == nil {
		return got, nil
	}
	err = c.explainConflict(ctx, got, err)
	_, rerr := c.addLeniently(ctx, cur, c.addPlain)
	return PortMapping{}, &EditError{Old: cur, Err: err, Restored: rerr == nil, RestoreErr: rerr}
}

// explainConflict turns a 718 into a *ConflictError naming the holder.
func (c *Client) explainConflict(ctx context.Context, m PortMapping, err error) error {
	if upnp.ErrorCode(err) != CodeConflictInMappingEntry {
		return err
	}
	holder, herr := c.GetSpecificPortMappingEntry(ctx, m.RemoteHost, m.ExternalPort, m.Protocol)
	return &ConflictError{Wanted: m, Holder: holder, HolderKnown: herr == nil, Free: upnp.ErrorCode(herr) == CodeNoSuchEntryInArray, Err: err}
}

func (c *Client) deleteRangeV2(ctx context.Context, start, end uint16, protos []string) error {
	for _, p := range protos {
		err := c.DeletePortMappingRange(ctx, start, end, p, true)
		if err != nil && upnp.ErrorCode(err) != CodePortMappingNotFound {
			return err
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// RangeError reports the mappings RemoveRange found in its range and could
// not remove, each with the router's reason.
type RangeError struct {
	// Kept are the mappings still in the range.
	Kept []PortMapping
	// Errs holds, for each of Kept, why it stayed (the router's refusal of
	// DeletePortMapping, or nil when the router just left it).
	Errs []error
}

func (e *RangeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "igd: %d mapping(s) in the range were not removed:", len(e.Kept))
	for i, m := range e.Kept {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " %v -> %s", m.Key(), net.JoinHostPort(m.InternalClient, strconv.Itoa(int(m.InternalPort))))
		if e.Errs[i] != nil {
			fmt.Fprintf(&b, " (%v)", e.Errs[i])
		}
	}
	return b.String()
}

// Unwrap returns the router's refusals.
func (e *RangeError) Unwrap() []error {
	var out []error
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// RemoveRange removes every mapping of proto ("TCP", "UDP", or "" for both)
// whose external port is in [start, end], and returns the mappings really
// removed, as read from the router's table before and after: a version 2
// service's DeletePortMappingRange does not say what it removed, and
// routers in secure mode leave other hosts' mappings in place.
//
// It lists the table (an empty range sends nothing else), asks a version 2
// service for DeletePortMappingRange with NewManage=1, then deletes what is
// left in the range one by one, and lists the table again. Mappings that
// stay are reported in a *RangeError with the router's reasons; an entry
// that went away by itself meanwhile is neither removed by us nor an
// error.
func (c *Client) RemoveRange(ctx context.Context, start, end uint16, proto string) ([]PortMapping, error) {
	if start > end {
		return nil, fmt.Errorf("igd: port range %d-%d is reversed", start, end)
	}
	protos := []string{TCP, UDP}
	if p := normProto(proto); p != "" {
		if p != TCP && p != UDP {
			return nil, fmt.Errorf("igd: protocol %q: use TCP or UDP", proto)
		}
		protos = []string{p}
	}
	inRange := func(list []PortMapping) []PortMapping {
		var out []PortMapping
		for _, m := range list {
			if m.ExternalPort >= start && m.ExternalPort <= end && contains(protos, normProto(m.Protocol)) {
				out = append(out, m)
			}
		}
		return out
	}
	before, err := c.ListPortMappings(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("igd: listing the mappings before deleting a range: %w", err)
	}
	targets := inRange(before)
	if len(targets) == 0 {
		return nil, nil
	}
	refusals := map[Key]error{}
	if c.Version >= 2 {
		if err := c.deleteRangeV2(ctx, start, end, protos); err != nil {
			c.logger().Debug("igd: DeletePortMappingRange failed; deleting entries one by one", "err", err)
		}
		after, err := c.ListPortMappings(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("igd: listing the mappings after DeletePortMappingRange: %w", err)
		}
		targets = inRange(after)
	}
	for _, m := range targets {
		err := c.DeletePortMapping(ctx, m.RemoteHost, m.ExternalPort, m.Protocol)
		if err != nil && upnp.ErrorCode(err) != CodeNoSuchEntryInArray {
			refusals[m.Key()] = err
		}
	}
	after, err := c.ListPortMappings(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("igd: listing the mappings after deleting a range: %w", err)
	}
	still := map[Key]PortMapping{}
	for _, m := range inRange(after) {
		still[m.Key()] = m
	}
	var removed []PortMapping
	for _, m := range inRange(before) {
		if _, ok := still[m.Key()]; !ok {
			removed = append(removed, m)
		}
	}
	if len(still) == 0 {
		return removed, nil
	}
	re := &RangeError{}
	for _, m := range inRange(after) {
		re.Kept = append(re.Kept, m)
		re.Errs = append(re.Errs, refusals[m.Key()])
	}
	return removed, re
}
