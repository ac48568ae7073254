package gateway

import (
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"time"
)

// table is the mapping table. It is not safe for concurrent use; the Core
// guards it with its mutex.
//
// Entries live in a dense slice so that UPnP's GetGenericPortMappingEntry
// (the i-th entry) is a slice index; a map from key to slot gives lookup by
// key; deletion moves the last entry into the hole, so both stay O(1) and
// the order of the remaining entries changes only at the hole. More
// indexes ride along, all referring to entries by key so that moving an
// entry between slots never touches them:
//
//   - per owner, a dense list of keys (swap-removed the same way), giving
//     quota counts and the i-th entry of one owner (ListOwnOnly) in O(1);
//   - per internal address, the same kind of dense list (beside the
//     owner's, in one map by address: one lookup for the usual mapping,
//     which its own host owns), and per internal address, protocol and
//     port the (usually single) key forwarding there, so that NAT-PMP and
//     PCP, which name a mapping by its internal side, find it in O(1)
//     however many mappings the host holds;
//   - with an external address pool, a dense list of the keys on the
//     gateway's own address, so that UPnP, which sees that address only,
//     gets its i-th entry in O(1) however many pool mappings there are;
//   - a bitmap of the external ports in use per protocol, so that AddAny
//     skips 64 taken ports at a time (one pair for the gateway's own
//     address, and one per external pool address in use);
//   - a binary min-heap of expiry times, whose root is the next lease to
//     end, so that the Core needs a single timer. Each entry knows its heap
//     position and each heap item its entry's slot (fixed up when the
//     entry moves), making refresh and delete O(log n) with no stale items
//     and no map lookups while sifting.
type table struct {
	entries []tableEntry
	slots   map[uint64]int32
	// owners holds, per address, the keys of the mappings it owns and of
	// those forwarding to it: one map, so that the usual mapping, owned
	// by the host it forwards to, costs one lookup.
	owners map[netip.Addr]*ownerKeys
	// byInternal holds one key forwarding to each internal side, and
	// byInternalMore the others, when several mappings forward to one
	// (rare: a million leases then cost no slice each).
	byInternal     map[internalKey]uint64
	byInternalMore map[internalKey][]uint64
	used           [2]PortSet
	// poolUsed holds the bitmaps of the external pool addresses, by the
	// address's 32 bits.
	poolUsed map[uint32]*[2]PortSet
	heap     []heapItem
	// pooled is set when the Core has an external address pool: own then
	// lists the keys of the mappings on the gateway's own address, the
	// ones UPnP sees. Without a pool every entry is there, and own stays
	// empty.
	pooled bool
	own    []uint64
	// unapplied counts the entries whose unapplied flag is set.
	unapplied int
}

type tableEntry struct {
	m           Mapping
	heapIdx     int32 // position in heap; -1 for permanent mappings
	ownerIdx    int32 // position in owners[m.Owner].keys
	internalIdx int32 // position in owners[m.InternalAddr].internal
	ownIdx      int32 // position in own (pooled tables, own address only)
	// unapplied marks a restored mapping not yet re-applied to the
	// backend (Core.reapply). A put keeps it; it moves with the entry.
	unapplied bool
}

// internalKey names where a mapping forwards to.
type internalKey struct {
	addr  netip.Addr
	proto Protocol
	port  uint16
}

func internalKeyOf(m *Mapping) internalKey {
	return internalKey{addr: m.InternalAddr, proto: m.Protocol, port: m.InternalPort}
}

// PortSet is a set of ports, one bit each (8 KiB). The zero value is
// empty.
type PortSet [65536 / 64]uint64

// Add puts p in the set.
func (s *PortSet) Add(p uint16) { s[p/64] |= 1 << (p % 64) }

// Remove takes p out of the set.
func (s *PortSet) Remove(p uint16) { s[p/64] &^= 1 << (p % 64) }

// Contains reports whether p is in the set.
func (s *PortSet) Contains(p uint16) bool { return s[p/64]&(1<<(p%64)) != 0 }

// Len returns the number of ports in the set.
func (s *PortSet) Len() int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// protoIndex is the index of p in per-protocol arrays: TCP 0, UDP 1.
func protoIndex(p Protocol) int {
	if p == UDP {
		return 1
	}
	return 0
}

type ownerKeys struct {
	keys     []uint64 // owned by the address (Mapping.Owner)
	internal []uint64 // forwarding to it (Mapping.InternalAddr)
}

// hostFor returns a's lists, creating them.
func (t *table) hostFor(a netip.Addr) *ownerKeys {
	o := t.owners[a]
	if o == nil {
		o = &ownerKeys{}
		t.owners[a] = o
	}
	return o
}

type heapItem struct {
	at   int64 // expiry, Unix nanoseconds (see expiryNanos)
	slot int32 // index of the entry in entries
}

func (t *table) heapKey(i int) uint64 { return t.entries[t.heap[i].slot].m.Key().pack() }

func newTable() *table {
	return &table{
		slots:          make(map[uint64]int32),
		owners:         make(map[netip.Addr]*ownerKeys),
		byInternal:     make(map[internalKey]uint64),
		byInternalMore: make(map[internalKey][]uint64),
		poolUsed:       make(map[uint32]*[2]PortSet),
	}
}

// addrBits is an IPv4 address as a number; 0 for the zero Addr.
func addrBits(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// usedPorts returns the bitmap of proto's ports in use on addr (the zero
// Addr: the gateway's own address), creating it when create is set; nil
// when addr has none.
func (t *table) usedPorts(addr netip.Addr, proto Protocol, create bool) *PortSet {
	if !addr.IsValid() {
		return &t.used[protoIndex(proto)]
	}
	u := t.poolUsed[addrBits(addr)]
	if u == nil {
		if !create {
			return nil
		}
		u = new([2]PortSet)
		t.poolUsed[addrBits(addr)] = u
	}
	return &u[protoIndex(proto)]
}

func (t *table) len() int { return len(t.entries) }

// grow makes room for n more entries at once, so that restoring a million
// leases does not copy the table and rehash its indexes twenty times.
func (t *table) grow(n int) {
	if n <= 0 {
		return
	}
	t.entries = slices.Grow(t.entries, n)
	t.heap = slices.Grow(t.heap, n)
	if len(t.slots) == 0 {
		t.slots = make(map[uint64]int32, n)
		t.byInternal = make(map[internalKey]uint64, n)
	}
}

// lookup returns the entry for k, or nil. The pointer is valid until the
// table is next changed.
func (t *table) lookup(k uint64) *tableEntry {
	i, ok := t.slots[k]
	if !ok {
		return nil
	}
	return &t.entries[i]
}

// at returns the i-th entry; i must be in [0, len).
func (t *table) at(i int) *tableEntry { return &t.entries[i] }

func (t *table) ownerLen(owner netip.Addr) int {
	if o := t.owners[owner]; o != nil {
		return len(o.keys)
	}
	return 0
}

// ownerAt returns the i-th entry owned by owner, or nil when i is out of
// range.
func (t *table) ownerAt(owner netip.Addr, i int) *tableEntry {
	o := t.owners[owner]
	if o == nil || i < 0 || i >= len(o.keys) {
		return nil
	}
	return t.lookup(o.keys[i])
}

// ownerEntries calls yield for each entry owned by owner until it returns
// false. The table must not change during the iteration.
func (t *table) ownerEntries(owner netip.Addr) func(yield func(*tableEntry) bool) {
	return func(yield func(*tableEntry) bool) {
		o := t.owners[owner]
		if o == nil {
			return
		}
		for _, k := range o.keys {
			if !yield(t.lookup(k)) {
				return
			}
		}
	}
}

// put inserts m, or replaces the entry with m's key.
func (t *table) put(m Mapping) {
	k := m.Key().pack()
	at, expires := expiryNanos(m.Expires)
	if i, ok := t.slots[k]; ok {
		e := &t.entries[i]
		if e.m.Owner != m.Owner {
			t.ownerRemove(e)
			t.ownerAdd(k, e, m.Owner)
		}
		if e.m.InternalAddr != m.InternalAddr {
			t.internalRemove(e)
			t.internalAdd(k, e, m.InternalAddr)
		}
		if ik := internalKeyOf(&m); ik != internalKeyOf(&e.m) {
			t.byInternalRemove(k, internalKeyOf(&e.m))
			t.byInternalAdd(k, ik)
		}
		e.m = m
		t.heapSet(i, e, at, expires)
		return
	}
	t.insert(k, m, at, expires)
}

// insertNew inserts m, whose key the table must not hold: the restore,
// which has checked that, saves a lookup in a table of a million.
func (t *table) insertNew(m Mapping) {
	at, expires := expiryNanos(m.Expires)
	t.insert(m.Key().pack(), m, at, expires)
}

func (t *table) insert(k uint64, m Mapping, at int64, expires bool) {
	i := int32(len(t.entries))
	t.entries = append(t.entries, tableEntry{m: m, heapIdx: -1})
	t.slots[k] = i
	e := &t.entries[i]
	o := t.hostFor(m.Owner)
	e.ownerIdx = listAppend(&o.keys, k)
	if m.InternalAddr != m.Owner {
		o = t.hostFor(m.InternalAddr)
	}
	e.internalIdx = listAppend(&o.internal, k)
	t.byInternalAdd(k, internalKeyOf(&m))
	t.usedPorts(m.ExternalAddr, m.Protocol, true).Add(m.ExternalPort)
	if t.pooled && !m.ExternalAddr.IsValid() {
		e.ownIdx = listAppend(&t.own, k)
	}
	t.heapSet(i, e, at, expires)
}

// ownLen returns the number of mappings on the gateway's own external
// address (not on a pool address).
func (t *table) ownLen() int {
	if t.pooled {
		return len(t.own)
	}
	return len(t.entries)
}

// ownAt returns the i-th mapping on the gateway's own external address;
// i must be in [0, ownLen).
func (t *table) ownAt(i int) *tableEntry {
	if t.pooled {
		return t.lookup(t.own[i])
	}
	return &t.entries[i]
}

// inUse reports whether proto's external port of the gateway's own
// address is in the table.
func (t *table) inUse(proto Protocol, port uint16) bool {
	return t.used[protoIndex(proto)].Contains(port)
}

// forwardingTo calls yield with the key of each mapping forwarding to
// addr:port over proto until it returns false.
func (t *table) forwardingTo(addr netip.Addr, proto Protocol, port uint16) func(yield func(uint64) bool) {
	return func(yield func(uint64) bool) {
		ik := internalKey{addr: addr, proto: proto, port: port}
		k, ok := t.byInternal[ik]
		if !ok || !yield(k) {
			return
		}
		for _, k := range t.byInternalMore[ik] {
			if !yield(k) {
				return
			}
		}
	}
}

// internalEntries calls yield for each entry forwarding to addr until it
// returns false. The table must not change during the iteration.
func (t *table) internalEntries(addr netip.Addr) func(yield func(*tableEntry) bool) {
	return func(yield func(*tableEntry) bool) {
		o := t.owners[addr]
		if o == nil {
			return
		}
		for _, k := range o.internal {
			if !yield(t.lookup(k)) {
				return
			}
		}
	}
}

func (t *table) byInternalAdd(k uint64, ik internalKey) {
	if _, ok := t.byInternal[ik]; !ok {
		t.byInternal[ik] = k
		return
	}
	t.byInternalMore[ik] = append(t.byInternalMore[ik], k)
}

func (t *table) byInternalRemove(k uint64, ik internalKey) {
	more := t.byInternalMore[ik]
	if t.byInternal[ik] == k {
		if len(more) == 0 {
			delete(t.byInternal, ik)
			return
		}
		t.byInternal[ik] = more[len(more)-1]
		k = more[len(more)-1] // now to be taken out of more
	}
	for j, kk := range more {
		if kk == k {
			more[j] = more[len(more)-1]
			more = more[:len(more)-1]
			break
		}
	}
	if len(more) == 0 {
		delete(t.byInternalMore, ik)
	} else {
		t.byInternalMore[ik] = more
	}
}

// remove deletes the entry for k and returns it.
func (t *table) remove(k uint64) (Mapping, bool) {
	i, ok := t.slots[k]
	if !ok {
		return Mapping{}, false
	}
	e := &t.entries[i]
	if e.heapIdx >= 0 {
		t.heapRemove(int(e.heapIdx))
	}
	if e.unapplied {
		t.unapplied--
	}
	t.ownerRemove(e)
	t.internalRemove(e)
	t.byInternalRemove(k, internalKeyOf(&e.m))
	t.usedPorts(e.m.ExternalAddr, e.m.Protocol, true).Remove(e.m.ExternalPort)
	if t.pooled && !e.m.ExternalAddr.IsValid() {
		if moved, ok := listRemove(&t.own, e.ownIdx); ok {
			t.entries[t.slots[moved]].ownIdx = e.ownIdx
		}
	}
	m := e.m
	last := int32(len(t.entries) - 1)
	if i != last {
		moved := &t.entries[i]
		*moved = t.entries[last]
		t.slots[moved.m.Key().pack()] = i
		if moved.heapIdx >= 0 {
			t.heap[moved.heapIdx].slot = i
		}
	}
	t.entries[last] = tableEntry{} // drop references so the GC can reclaim strings
	t.entries = t.entries[:last]
	delete(t.slots, k)
	return m, true
}

func (t *table) ownerAdd(k uint64, e *tableEntry, owner netip.Addr) {
	e.ownerIdx = listAppend(&t.hostFor(owner).keys, k)
}

func (t *table) ownerRemove(e *tableEntry) {
	o := t.owners[e.m.Owner]
	if moved, ok := listRemove(&o.keys, e.ownerIdx); ok {
		t.entries[t.slots[moved]].ownerIdx = e.ownerIdx
	}
	t.dropIfEmpty(e.m.Owner, o)
}

func (t *table) internalAdd(k uint64, e *tableEntry, addr netip.Addr) {
	e.internalIdx = listAppend(&t.hostFor(addr).internal, k)
}

func (t *table) internalRemove(e *tableEntry) {
	o := t.owners[e.m.InternalAddr]
	if moved, ok := listRemove(&o.internal, e.internalIdx); ok {
		t.entries[t.slots[moved]].internalIdx = e.internalIdx
	}
	t.dropIfEmpty(e.m.InternalAddr, o)
}

// dropIfEmpty forgets a's lists once both are empty.
func (t *table) dropIfEmpty(a netip.Addr, o *ownerKeys) {
	if len(o.keys) == 0 && len(o.internal) == 0 {
		delete(t.owners, a)
	}
}

// listAppend appends k to *list and returns its position.
func listAppend(list *[]uint64, k uint64) int32 {
	*list = append(*list, k)
	return int32(len(*list) - 1)
}

// listRemove removes position i of *list by moving the last key into it,
// and returns that key when one moved.
func listRemove(list *[]uint64, i int32) (moved uint64, ok bool) {
	keys := *list
	last := len(keys) - 1
	if int(i) != last {
		moved, ok = keys[last], true
		keys[i] = moved
	}
	*list = keys[:last]
	return moved, ok
}

// expiryNanos converts an expiry to the heap's representation. Times
// beyond what UnixNano can represent (after the year 2262) saturate, which
// only makes them sort last.
func expiryNanos(t time.Time) (at int64, expires bool) {
	if t.IsZero() {
		return 0, false
	}
	const maxSec = math.MaxInt64/int64(time.Second) - 1
	const minSec = math.MinInt64/int64(time.Second) + 1
	switch s := t.Unix(); {
	case s > maxSec:
		return math.MaxInt64, true
	case s < minSec:
		return math.MinInt64, true
	}
	return t.UnixNano(), true
}

func (t *table) heapSet(slot int32, e *tableEntry, at int64, expires bool) {
	switch {
	case !expires:
		if e.heapIdx >= 0 {
			t.heapRemove(int(e.heapIdx))
		}
	case e.heapIdx < 0:
		e.heapIdx = int32(len(t.heap))
		t.heap = append(t.heap, heapItem{at: at, slot: slot})
		t.heapUp(len(t.heap) - 1)
	default:
		i := int(e.heapIdx)
		t.heap[i].at = at
		t.heapFix(i)
	}
}

func (t *table) heapSwap(i, j int) {
	h := t.heap
	h[i], h[j] = h[j], h[i]
	t.entries[h[i].slot].heapIdx = int32(i)
	t.entries[h[j].slot].heapIdx = int32(j)
}

func (t *table) heapUp(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if t.heap[i].at <= t.heap[j].at {
			return
		}
		t.heapSwap(i, j)
		j = i
	}
}

// heapDown reports whether the item at i moved.
func (t *table) heapDown(i int) bool {
	i0, n := i, len(t.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && t.heap[r].at < t.heap[l].at {
			j = r
		}
		if t.heap[i].at <= t.heap[j].at {
			break
		}
		t.heapSwap(i, j)
		i = j
	}
	return i > i0
}

func (t *table) heapFix(i int) {
	if !t.heapDown(i) {
		t.heapUp(i)
	}
}

func (t *table) heapRemove(i int) {
	last := len(t.heap) - 1
	if i != last {
		t.heapSwap(i, last)
	}
	t.entries[t.heap[last].slot].heapIdx = -1
	t.heap = t.heap[:last]
	if i != last {
		t.heapFix(i)
	}
}

// earliest returns the earliest expiry among keys for which skip is false.
// Skipped keys (those with an operation in flight) are few, and a subtree
// is entered only below a skipped node, so this visits O(skipped) nodes.
func (t *table) earliest(skip func(uint64) bool) (int64, bool) {
	var best int64
	found := false
	var stack [64]int
	todo := stack[:0]
	if len(t.heap) > 0 {
		todo = append(todo, 0)
	}
	for len(todo) > 0 {
		i := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		it := t.heap[i]
		if found && it.at >= best {
			continue // nothing below can be earlier
		}
		if !skip(t.heapKey(i)) {
			best, found = it.at, true
			continue
		}
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(t.heap) {
				todo = append(todo, c)
			}
		}
	}
	return best, found
}

// due returns the keys whose expiry is at or before now, except those for
// which skip is true. It visits only due nodes and their children.
func (t *table) due(now int64, skip func(uint64) bool, limit int) []uint64 {
	var keys []uint64
	var stack [64]int
	todo := stack[:0]
	if len(t.heap) > 0 {
		todo = append(todo, 0)
	}
	for len(todo) > 0 {
		i := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		it := t.heap[i]
		if it.at > now {
			continue
		}
		if k := t.heapKey(i); !skip(k) {
			keys = append(keys, k)
			if len(keys) == limit {
				break
			}
		}
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(t.heap) {
				todo = append(todo, c)
			}
		}
	}
	return keys
}
