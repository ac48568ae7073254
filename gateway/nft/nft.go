//go:build linux

package nft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
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
	mapFwdPool  = "fwd4pool"
	setPool     = "pool4"
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
	// Pool lists the addresses of a carrier's external address pool other
	// than the gateway's own external address (gateway.Config.ExternalPool
	// without it). When it is set the backend forwards rules that name an
	// ExternalAddr from that address only (map fwd4pool, keyed by
	// destination address, protocol and port), and traffic to a pool
	// address that no such rule matches is not forwarded by the
	// address-less maps either: a mapping of the gateway's own address is
	// not reachable on the pool's. Empty: no pool map, no change to the
	// ruleset.
	Pool []netip.Addr
	// Rebuild makes New empty the maps instead of reading them back from
	// the kernel, for the caller to fill them again from its lease journal
	// (gateway.Core does, through AddBatch, 512 elements a message). The
	// kernel dumps a map in time quadratic in its size (about 9 s for
	// 131,070 elements, minutes for a million), while the rebuild adds
	// ~100,000 elements a second; the price is that forwarding of the
	// existing mappings stops from New until their element is back. For a
	// carrier-scale table; off, a restart keeps every element in place.
	Rebuild bool
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
	// fwdPool and pool are the pool map and the pool's address set; nil
	// without Config.Pool.
	fwdPool *nftables.Set
	pool    *nftables.Set

	mu sync.Mutex // serializes netlink requests and guards installed
	// installed is what the maps hold, by protocol and external port: it
	// tells Delete which map holds a port without asking the kernel.
	// A compact value (18 bytes a mapping, not a Rule's 90), for tables
	// of a million.
	installed map[portKey]target
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
	if len(cfg.Pool) > 0 {
		for _, a := range cfg.Pool {
			if !a.Unmap().Is4() {
				conn.CloseLasting()
				return nil, fmt.Errorf("nft: external pool address %v is not IPv4", a)
			}
		}
		b.fwdPool = &nftables.Set{Table: t, Name: mapFwdPool, ID: 3, IsMap: true,
			KeyType:  nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService),
			DataType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)}
		b.pool = &nftables.Set{Table: t, Name: setPool, ID: 4, KeyType: nftables.TypeIPAddr}
	}
	if err := b.setup(); err != nil {
		b.closeConns()
		return nil, err
	}
	var rules []gateway.Rule
	if cfg.Rebuild {
		for _, set := range b.maps() {
			b.conn.FlushSet(set)
		}
		if err := b.conn.Flush(); err != nil {
			b.closeConns()
			return nil, fmt.Errorf("nft: emptying the maps to rebuild them: %w", err)
		}
	} else if rules, err = b.readMaps(); err != nil {
		b.closeConns()
		return nil, err
	}
	b.installed = make(map[portKey]target, len(rules))
	for _, r := range rules {
		b.installed[keyOf(r)] = targetOf(r)
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
	for _, s := range b.maps() {
		if err := b.conn.AddSet(s, nil); err != nil {
			return fmt.Errorf("nft: encoding map %s: %w", s.Name, err)
		}
	}
	if b.pool != nil {
		var elems []nftables.SetElement
		for _, a := range b.cfg.Pool {
			a4 := a.Unmap().As4()
			elems = append(elems, nftables.SetElement{Key: a4[:]})
		}
		if err := b.conn.AddSet(b.pool, nil); err != nil {
			return fmt.Errorf("nft: encoding set %s: %w", b.pool.Name, err)
		}
		b.conn.FlushSet(b.pool) // the pool as configured now, not as it was
		if err := b.conn.SetAddElements(b.pool, elems); err != nil {
			return fmt.Errorf("nft: encoding set %s: %w", b.pool.Name, err)
		}
	}
	rules, err := buildRules(b.cfg, b.fwd, b.fwdSrc, b.fwdPool, b.pool)
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
	old, had := b.installedRule(keyOf(r))
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
	b.installed[keyOf(r)] = targetOf(r)
	b.log.Debug("mapping installed", "rule", r.String())
	return nil
}

// AddBatch implements gateway.BatchAdder: it installs rules, each
// replacing what its key held, in transactions of restoreChunk rules (a
// commit group's few are one). Each transaction is all or nothing; on an
// error the earlier ones stay installed, and the rules a fallback Add then
// refuses were in the failed one, so none of them is.
func (b *Backend) AddBatch(ctx context.Context, rules []gateway.Rule) error {
	norm := make([]gateway.Rule, 0, len(rules))
	for _, r := range rules {
		r, err := normalize(r)
		if err != nil {
			return err
		}
		if r.ExternalAddr.IsValid() && b.fwdPool == nil {
			return fmt.Errorf("nft: rule %v: no external address pool is configured", r)
		}
		norm = append(norm, r)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// Plain index loops, not slices.Chunk: its iterator closures per
	// element type are code the router build does without.
	for i := 0; i < len(norm); i += restoreChunk {
		chunk := norm[i:min(i+restoreChunk, len(norm)):min(i+restoreChunk, len(norm))]
		if err := ctx.Err(); err != nil {
			return err
		}
		del := map[*nftables.Set][]nftables.SetElement{}
		add := map[*nftables.Set][]nftables.SetElement{}
		for _, r := range chunk {
			if old, had := b.installedRule(keyOf(r)); had {
				set, key := b.elementOf(old)
				del[set] = append(del[set], nftables.SetElement{Key: key})
			}
			set, key := b.elementOf(r)
			add[set] = append(add[set], nftables.SetElement{Key: key, Val: encodeData(r)})
		}
		err := b.retry(func() error {
			for _, set := range b.maps() {
				if elems := del[set]; len(elems) > 0 {
					if err := b.tx.SetDeleteElements(set, elems); err != nil {
						return err
					}
				}
				if elems := add[set]; len(elems) > 0 {
					if err := b.tx.SetAddElements(set, elems); err != nil {
						return err
					}
				}
			}
			return b.tx.Flush()
		})
		if err != nil {
			return fmt.Errorf("nft: installing %d mappings: %w", len(chunk), err)
		}
		for _, r := range chunk {
			b.installed[keyOf(r)] = targetOf(r)
		}
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
	old, had := b.installedRule(keyOf(r))
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
	for k, v := range b.installed {
		out = append(out, k.rule(v))
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
		if old, ok := b.installedRule(keyOf(r)); ok {
			olds = append(olds, old)
		}
	}
	for i := 0; i < len(olds); i += restoreChunk {
		chunk := olds[i:min(i+restoreChunk, len(olds)):min(i+restoreChunk, len(olds))]
		if err := ctx.Err(); err != nil {
			return err
		}
		bySet := map[*nftables.Set][]nftables.SetElement{}
		for _, r := range chunk {
			set, key := b.elementOf(r)
			bySet[set] = append(bySet[set], nftables.SetElement{Key: key})
		}
		err := b.retry(func() error {
			// One message per map: one acknowledgement each.
			for _, set := range b.maps() {
				if elems := bySet[set]; len(elems) > 0 {
					if err := b.tx.SetDeleteElements(set, elems); err != nil {
						return err
					}
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

// installedRule returns the rule installed for k.
func (b *Backend) installedRule(k portKey) (gateway.Rule, bool) {
	v, ok := b.installed[k]
	if !ok {
		return gateway.Rule{}, false
	}
	return k.rule(v), true
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
	bySet := map[*nftables.Set][]nftables.SetElement{}
	for k, v := range b.installed {
		r := k.rule(v)
		set, key := b.elementOf(r)
		bySet[set] = append(bySet[set], nftables.SetElement{Key: key, Val: encodeData(r)})
	}
	for _, set := range b.maps() {
		elems := bySet[set]
		for i := 0; i < len(elems); i += restoreChunk {
			chunk := elems[i:min(i+restoreChunk, len(elems)):min(i+restoreChunk, len(elems))]
			if err := b.conn.SetAddElements(set, chunk); err != nil {
				return err
			}
			if err := b.conn.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// maps returns the forwarding maps: fwd4, fwd4src, and fwd4pool with a
// pool.
func (b *Backend) maps() []*nftables.Set {
	if b.fwdPool != nil {
		return []*nftables.Set{b.fwd, b.fwdSrc, b.fwdPool}
	}
	return []*nftables.Set{b.fwd, b.fwdSrc}
}

// elementOf returns the map that holds r and r's key in it.
func (b *Backend) elementOf(r gateway.Rule) (*nftables.Set, []byte) {
	switch {
	case r.ExternalAddr.IsValid():
		return b.fwdPool, encodePoolKey(r)
	case r.RemoteHost.IsValid():
		return b.fwdSrc, encodeSrcKey(r)
	}
	return b.fwd, encodeKey(r)
}

// SupportsPool implements gateway.PoolBackend: rules on pool addresses
// are forwarded when the backend was given the pool (Config.Pool).
func (b *Backend) SupportsPool() bool { return b.fwdPool != nil }

// queueAdd and queueDelete queue an element change on b.tx, for the
// next b.tx.Flush.
func (b *Backend) queueAdd(r gateway.Rule) error {
	if r.ExternalAddr.IsValid() && b.fwdPool == nil {
		return fmt.Errorf("nft: rule %v: no external address pool is configured", r)
	}
	set, key := b.elementOf(r)
	return b.tx.SetAddElements(set, []nftables.SetElement{{Key: key, Val: encodeData(r)}})
}

func (b *Backend) queueDelete(r gateway.Rule) error {
	set, key := b.elementOf(r)
	if set == nil {
		return nil
	}
	return b.tx.SetDeleteElements(set, []nftables.SetElement{{Key: key}})
}

// Flush implements gateway.Backend: it empties both maps. The chains stay,
// so the next Add needs no setup.
func (b *Backend) Flush(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, set := range b.maps() {
		b.conn.FlushSet(set)
	}
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
	for _, s := range b.maps() {
		elems, err := b.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("nft: reading map %s of table inet %s: %w", s.Name, b.table.Name, err)
		}
		for _, e := range elems {
			r, err := decodeElementOf(e.Key, e.Val, s == b.fwdPool)
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
