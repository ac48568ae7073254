//go:build linux

package nft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"

	"github.com/google/nftables"
	"github.com/portfwd/portfwd/gateway"
	"golang.org/x/sys/unix"
)

// DefaultTable is the name of the inet table the backend owns when
// Config.Table is empty.
const DefaultTable = "portfwd"

// Names of the objects inside our table. They are part of the on-disk
// contract with a previous run of the daemon: renaming them would orphan
// the elements a restart is meant to keep.
const (
	mapFwd      = "fwd4"
	mapFwdSrc   = "fwd4src"
	chainPre    = "prerouting"
	chainPost   = "postrouting"
	chainFilter = "forward"
)

// Config configures a Backend.
type Config struct {
	// Table is the name of the inet table the backend owns; DefaultTable
	// when empty. Two daemons on one host need two tables.
	Table string
	// ExternalInterfaces are the WAN-side interfaces whose incoming traffic
	// is forwarded (at least one). A trailing "*" matches a prefix.
	ExternalInterfaces []string
	// InternalInterfaces are the LAN-side interfaces. When set, hairpin
	// (NAT loopback) is enabled for them; see the package documentation.
	InternalInterfaces []string
	// NetNS, when non-zero, is an open file descriptor of the network
	// namespace to program (such as /run/netns/NAME) instead of the
	// caller's. The caller keeps ownership of the descriptor and must keep
	// it open while the Backend is in use.
	NetNS int
	// ForwardTable ("inet filter", "ip6 filter") and ForwardChain name the
	// chain of the administrator's firewall where IPv6 pinholes are
	// accepted (see pinhole.go); empty, our own table's forward chain.
	ForwardTable, ForwardChain string
	// Logger receives operational messages; slog.Default() when nil.
	Logger *slog.Logger
}

func (c Config) table() string {
	if c.Table == "" {
		return DefaultTable
	}
	return c.Table
}

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.Default()
	}
	return c.Logger
}

// Backend forwards ports with nftables DNAT. It implements gateway.Backend
// and is safe for concurrent use.
type Backend struct {
	cfg  Config
	log  *slog.Logger
	conn *nftables.Conn
	// tx sends the map element changes of Add, Delete and their batches
	// (txn.go): the request path's transactions.
	tx     *elemTxn
	table  *nftables.Table
	fwd    *nftables.Set
	fwdSrc *nftables.Set

	mu sync.Mutex // serializes netlink requests and guards installed
	// installed is what the maps hold, by protocol and external port: it
	// tells Delete which map holds a port without asking the kernel.
	installed map[portKey]gateway.Rule
	// pins is the IPv6 pinhole side (pinhole.go).
	pins *pinholes
}

var (
	_ gateway.BatchAdder     = (*Backend)(nil)
	_ gateway.PinholeBackend = (*Backend)(nil)
	_ gateway.PinholeLister  = (*Backend)(nil)
)

var _ gateway.Backend = (*Backend)(nil)

// New creates the table, maps and chains described in the package
// documentation, or adopts them when a previous run left them: the chains
// are rewritten for cfg and the map elements are kept, so that traffic for
// existing mappings keeps flowing across a daemon restart.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if len(cfg.ExternalInterfaces) == 0 {
		return nil, errors.New("nft: no external interface configured: name the WAN interface(s) so that only traffic from outside is forwarded")
	}
	for _, list := range [][]string{cfg.ExternalInterfaces, cfg.InternalInterfaces} {
		for _, name := range list {
			if _, err := ifnameMatch(name); err != nil {
				return nil, fmt.Errorf("nft: %w", err)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(cfg.NetNS))
	if err != nil {
		return nil, fmt.Errorf("nft: opening netlink socket: %w", permHint(err))
	}
	tx, err := dialElemTxn(cfg.NetNS)
	if err != nil {
		conn.CloseLasting()
		return nil, fmt.Errorf("nft: opening netlink socket: %w", permHint(err))
	}
	t := &nftables.Table{Name: cfg.table(), Family: nftables.TableFamilyINet}
	b := &Backend{
		cfg:   cfg,
		log:   cfg.logger().With("backend", "nft", "table", "inet "+t.Name),
		conn:  conn,
		tx:    tx,
		table: t,
		// Set IDs only name sets inside one batch; fixed ones keep
		// google/nftables from touching its global ID counter.
		fwd: &nftables.Set{Table: t, Name: mapFwd, ID: 1, IsMap: true,
			KeyType:  nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService),
			DataType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)},
		fwdSrc: &nftables.Set{Table: t, Name: mapFwdSrc, ID: 2, IsMap: true,
			KeyType:  nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService),
			DataType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)},
	}
	if err := b.setup(); err != nil {
		b.closeConns()
		return nil, err
	}
	rules, err := b.readMaps()
	if err != nil {
		b.closeConns()
		return nil, err
	}
	b.installed = make(map[portKey]gateway.Rule, len(rules))
	for _, r := range rules {
		b.installed[keyOf(r)] = r
	}
	if err := b.setupPinholes(); err != nil {
		b.closeConns()
		return nil, err
	}
	pins, err := b.readPinholes()
	if err != nil {
		b.closeConns()
		return nil, err
	}
	for _, r := range pins {
		b.pins.installed[r.PinholeKey] = r
	}
	b.log.Info("nft backend ready", "mappings", len(rules), "external", cfg.ExternalInterfaces, "hairpin", cfg.InternalInterfaces)
	return b, nil
}

// Name implements gateway.Backend.
func (b *Backend) Name() string { return "nft" }

// setup creates or adopts our table in one netlink batch, so that a restart
// swaps the old rules for the new ones atomically.
func (b *Backend) setup() error {
	existing := map[string]bool{}
	chains, err := b.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("nft: listing chains: %w", permHint(err))
	}
	for _, c := range chains {
		if c.Table != nil && c.Table.Name == b.table.Name {
			existing[c.Name] = true
		}
	}

	b.conn.AddTable(b.table)
	for _, s := range []*nftables.Set{b.fwd, b.fwdSrc} {
		if err := b.conn.AddSet(s, nil); err != nil {
			return fmt.Errorf("nft: encoding map %s: %w", s.Name, err)
		}
	}
	rules, err := buildRules(b.cfg, b.fwd, b.fwdSrc)
	if err != nil {
		return fmt.Errorf("nft: %w", err)
	}
	for _, c := range ourChains(b.table) {
		b.conn.AddChain(c)
		if existing[c.Name] {
			b.conn.FlushChain(c)
		}
		for _, exprs := range rules[c.Name] {
			b.conn.AddRule(&nftables.Rule{Table: b.table, Chain: c, Exprs: exprs})
		}
	}
	if err := b.conn.Flush(); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("nft: table inet %s holds objects of another shape (left by another program or version?): delete it with \"nft delete table inet %s\" and start again: %w",
				b.table.Name, b.table.Name, err)
		}
		return fmt.Errorf("nft: creating table inet %s: %w", b.table.Name, permHint(err))
	}
	return nil
}

// Add implements gateway.Backend: it inserts one map element, replacing the
// element for the same protocol and port if there is one.
func (b *Backend) Add(ctx context.Context, r gateway.Rule) error {
	r, err := normalize(r)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	old, had := b.installed[keyOf(r)]
	err = b.retry(func() error {
		if had {
			if err := b.queueDelete(old); err != nil {
				return err
			}
		}
		if err := b.queueAdd(r); err != nil {
			return err
		}
		err := b.tx.Flush()
		if err != nil && had && errors.Is(err, unix.ENOENT) {
			// The old element was removed behind our back (nft delete
			// element …): the batch failed as a whole, so add alone. If
			// the whole table is gone this fails too, and retry restores
			// the table, old element included, before running us again.
			if err := b.queueAdd(r); err != nil {
				return err
			}
			err = b.tx.Flush()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("nft: installing %v: %w", r, err)
	}
	b.installed[keyOf(r)] = r
	b.log.Debug("mapping installed", "rule", r.String())
	return nil
}

// AddBatch implements gateway.BatchAdder: it installs rules, each
// replacing what its protocol and port held, in one transaction: all of
// them, or on error none.
func (b *Backend) AddBatch(ctx context.Context, rules []gateway.Rule) error {
	norm := make([]gateway.Rule, len(rules))
	for i, r := range rules {
		var err error
		if norm[i], err = normalize(r); err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	err := b.retry(func() error {
		for _, r := range norm {
			if old, had := b.installed[keyOf(r)]; had {
				if err := b.queueDelete(old); err != nil {
					return err
				}
			}
			if err := b.queueAdd(r); err != nil {
				return err
			}
		}
		return b.tx.Flush()
	})
	if err != nil {
		return fmt.Errorf("nft: installing %d mappings: %w", len(norm), err)
	}
	for _, r := range norm {
		b.installed[keyOf(r)] = r
	}
	b.log.Debug("mappings installed", "count", len(norm))
	return nil
}

// Delete implements gateway.Backend: it deletes the map element for
// r.Protocol and r.ExternalPort.
func (b *Backend) Delete(ctx context.Context, r gateway.Rule) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	old, had := b.installed[keyOf(r)]
	if !had {
		return nil
	}
	err := b.retry(func() error {
		if err := b.queueDelete(old); err != nil {
			return err
		}
		return b.tx.Flush()
	})
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nft: removing %v: %w", old, err)
	}
	delete(b.installed, keyOf(r))
	b.log.Debug("mapping removed", "rule", old.String())
	return nil
}

// InstalledRules implements gateway.RuleLister: the rules in the maps,
// those a previous run left included, as read from the kernel when the
// Backend was opened and kept up to date since.
func (b *Backend) InstalledRules(ctx context.Context) ([]gateway.Rule, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]gateway.Rule, 0, len(b.installed))
	for _, r := range b.installed {
		out = append(out, r)
	}
	return out, nil
}

// DeleteBatch implements gateway.BatchDeleter: it removes the map
// elements of rules restoreChunk at a time, each chunk one netlink batch,
// instead of one round trip per rule.
func (b *Backend) DeleteBatch(ctx context.Context, rules []gateway.Rule) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var olds []gateway.Rule
	for _, r := range rules {
		if old, ok := b.installed[keyOf(r)]; ok {
			olds = append(olds, old)
		}
	}
	for chunk := range slices.Chunk(olds, restoreChunk) {
		if err := ctx.Err(); err != nil {
			return err
		}
		var plain, src []nftables.SetElement
		for _, r := range chunk {
			if r.RemoteHost.IsValid() {
				src = append(src, nftables.SetElement{Key: encodeSrcKey(r)})
			} else {
				plain = append(plain, nftables.SetElement{Key: encodeKey(r)})
			}
		}
		err := b.retry(func() error {
			// One message per map: one acknowledgement each.
			if len(plain) > 0 {
				if err := b.tx.SetDeleteElements(b.fwd, plain); err != nil {
					return err
				}
			}
			if len(src) > 0 {
				if err := b.tx.SetDeleteElements(b.fwdSrc, src); err != nil {
					return err
				}
			}
			return b.tx.Flush()
		})
		if err != nil {
			return fmt.Errorf("nft: removing %d mappings: %w", len(chunk), err)
		}
		for _, r := range chunk {
			delete(b.installed, keyOf(r))
		}
	}
	b.log.Debug("mappings removed", "count", len(olds))
	return nil
}

// retry runs op, a netlink batch on our table, and when it fails because
// the table is gone (an administrator ran "nft flush ruleset", a firewall
// reload) re-creates the table with every installed mapping and runs op
// once more.
func (b *Backend) retry(op func() error) error {
	err := op()
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return err
	}
	if _, lerr := b.conn.ListTableOfFamily(b.table.Name, nftables.TableFamilyINet); lerr == nil {
		return err // the table is there: the missing object is an element
	}
	b.log.Warn("table vanished (ruleset flushed by someone else?): re-creating it", "mappings", len(b.installed))
	if serr := b.setup(); serr != nil {
		return errors.Join(err, serr)
	}
	if rerr := b.restore(); rerr != nil {
		return fmt.Errorf("restoring %d mappings: %w", len(b.installed), rerr)
	}
	if b.pins != nil && !b.pins.shared {
		// The pinhole sets and rules lived in the same table.
		if perr := b.setupPinholes(); perr != nil {
			return errors.Join(err, perr)
		}
		if perr := b.restorePinholes(); perr != nil {
			return errors.Join(err, perr)
		}
	}
	return op()
}

// restoreChunk bounds the elements per netlink message when restoring:
// small enough for the socket buffers, large enough that 10,000 mappings
// take a handful of round trips rather than one per mapping.
const restoreChunk = 512

// restore re-adds every installed mapping to the (re-created, empty) maps.
func (b *Backend) restore() error {
	var plain, src []nftables.SetElement
	for _, r := range b.installed {
		if r.RemoteHost.IsValid() {
			src = append(src, nftables.SetElement{Key: encodeSrcKey(r), Val: encodeData(r)})
		} else {
			plain = append(plain, nftables.SetElement{Key: encodeKey(r), Val: encodeData(r)})
		}
	}
	for _, m := range []struct {
		set   *nftables.Set
		elems []nftables.SetElement
	}{{b.fwd, plain}, {b.fwdSrc, src}} {
		for chunk := range slices.Chunk(m.elems, restoreChunk) {
			if err := b.conn.SetAddElements(m.set, chunk); err != nil {
				return err
			}
			if err := b.conn.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// queueAdd and queueDelete queue an element change on b.tx, for the
// next b.tx.Flush.
func (b *Backend) queueAdd(r gateway.Rule) error {
	if r.RemoteHost.IsValid() {
		return b.tx.SetAddElements(b.fwdSrc, []nftables.SetElement{{Key: encodeSrcKey(r), Val: encodeData(r)}})
	}
	return b.tx.SetAddElements(b.fwd, []nftables.SetElement{{Key: encodeKey(r), Val: encodeData(r)}})
}

func (b *Backend) queueDelete(r gateway.Rule) error {
	if r.RemoteHost.IsValid() {
		return b.tx.SetDeleteElements(b.fwdSrc, []nftables.SetElement{{Key: encodeSrcKey(r)}})
	}
	return b.tx.SetDeleteElements(b.fwd, []nftables.SetElement{{Key: encodeKey(r)}})
}

// Flush implements gateway.Backend: it empties both maps. The chains stay,
// so the next Add needs no setup.
func (b *Backend) Flush(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	b.conn.FlushSet(b.fwd)
	b.conn.FlushSet(b.fwdSrc)
	if err := b.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nft: flushing maps of table inet %s: %w", b.table.Name, err)
	}
	clear(b.installed)
	for _, rh := range b.pins.sets {
		for _, set := range rh {
			b.conn.FlushSet(set)
		}
	}
	if err := b.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nft: flushing the pinhole sets: %w", err)
	}
	clear(b.pins.installed)
	return nil
}

// Destroy deletes our table with everything in it. The Backend must not be
// used afterwards except for Close.
func (b *Backend) Destroy(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.pins != nil && b.pins.shared {
		// Ours in the administrator's table: our rules, then our sets.
		if rules, err := b.conn.GetRules(b.pins.table, b.pins.chain); err == nil {
			for _, r := range rules {
				if bytes.Equal(r.UserData, pinRuleTag) {
					b.conn.DelRule(r)
				}
			}
			if err := b.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("nft: removing the pinhole rules from %s: %w", b.cfg.ForwardTable, err)
			}
		}
		for _, rh := range b.pins.sets {
			for _, set := range rh {
				b.conn.DelSet(set)
			}
		}
		if err := b.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("nft: removing the pinhole sets from %s: %w", b.cfg.ForwardTable, err)
		}
	}
	b.conn.DelTable(b.table)
	if err := b.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nft: deleting table inet %s: %w", b.table.Name, err)
	}
	clear(b.installed)
	if b.pins != nil {
		clear(b.pins.installed)
	}
	return nil
}

// Close implements gateway.Backend. Rules stay installed.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closeConns()
}

// closeConns closes both netlink sockets.
func (b *Backend) closeConns() error {
	return errors.Join(b.tx.Close(), b.conn.CloseLasting())
}

// Rules reads both maps back from the kernel, sorted by protocol and
// external port. It reflects the kernel's state, not the Backend's
// bookkeeping, which makes it the tool for verifying a restore.
func (b *Backend) Rules(ctx context.Context) ([]gateway.Rule, error) {
	// One netlink socket serves every request, and replies are matched to
	// requests by order: requests must not overlap.
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return b.readMaps()
}

func (b *Backend) readMaps() ([]gateway.Rule, error) {
	var rules []gateway.Rule
	for _, s := range []*nftables.Set{b.fwd, b.fwdSrc} {
		elems, err := b.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("nft: reading map %s of table inet %s: %w", s.Name, b.table.Name, err)
		}
		for _, e := range elems {
			r, err := decodeElement(e.Key, e.Val)
			if err != nil {
				// Someone added an element by hand with a bad shape; the
				// kernel checks lengths, so this is a protocol we do not
				// forward. Report it rather than fail the whole read.
				b.log.Warn("ignoring map element", "map", s.Name, "err", err)
				continue
			}
			rules = append(rules, r)
		}
	}
	sort.Slice(rules, func(i, j int) bool { return gateway.CompareRules(rules[i], rules[j]) < 0 })
	return rules, nil
}

// permHint adds what to do to the error netlink gives to unprivileged
// callers.
func permHint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (programming nftables needs root or CAP_NET_ADMIN; or use the relay backend)", err)
	}
	return err
}
