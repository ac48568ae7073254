package pcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// NonceStore keeps what a program needs to refresh or delete its PCP
// mappings after it exits: their nonces. A server deletes a mapping only
// for the nonce that created it (RFC 6887 §11.3), so without the nonce a
// command such as "portfwd unmap" run after "portfwd map" could only wait
// for the mapping to expire.
//
// Each mapping is one JSON file in Dir, named after its key (gateway,
// protocol, internal port) and replaced atomically (written aside, then
// renamed), so concurrent processes working on different mappings do not
// disturb each other and a crash never leaves half a file. Files are
// readable by their owner only: a nonce lets anyone on the LAN delete the
// mapping. A NonceStore has no state besides Dir; its methods may be
// called concurrently.
type NonceStore struct {
	// Dir is the directory of the files, created on first Save. See
	// DefaultNonceDir.
	Dir string
}

// StoredMapping is one NonceStore entry.
type StoredMapping struct {
	// Gateway, Protocol and InternalPort are the key.
	Gateway      netip.Addr `json:"gateway"`
	Protocol     Protocol   `json:"protocol"`
	InternalPort uint16     `json:"internal_port"`

	Nonce        Nonce      `json:"nonce"`
	ExternalPort uint16     `json:"external_port"`
	ExternalAddr netip.Addr `json:"external_addr"`
	// Expires is when the server drops the mapping unless refreshed. An
	// expired entry is still worth a Delete: the server may have kept the
	// mapping longer, and deleting costs one packet.
	Expires time.Time `json:"expires"`
}

// Record returns the NonceStore entry of m, made through gateway and
// received at now.
func (m MapResult) Record(gateway netip.Addr, now time.Time) StoredMapping {
	return StoredMapping{
		Gateway:      gateway.Unmap(),
		Protocol:     m.Protocol,
		InternalPort: m.InternalPort,
		Nonce:        m.Nonce,
		ExternalPort: m.ExternalPort,
		ExternalAddr: m.ExternalAddr,
		Expires:      now.Add(m.Lifetime),
	}
}

// ErrNotStored is returned by Load when the store has no entry for the key.
// It comes wrapped together with fs.ErrNotExist.
var ErrNotStored = errors.New("pcp: no stored nonce for this mapping")

// DefaultNonceDir returns the directory programs should use for their
// NonceStore: portfwd/pcp-nonces in the user's cache directory. A lost
// nonce costs little (the mapping expires), so the cache is the right
// place.
func DefaultNonceDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("pcp: no directory for PCP nonces: %w (set HOME or XDG_CACHE_HOME)", err)
	}
	return filepath.Join(dir, "portfwd", "pcp-nonces"), nil
}

// Save writes m, replacing any entry with the same key.
func (s NonceStore) Save(m StoredMapping) error {
	path, err := s.path(m.Gateway, m.Protocol, m.InternalPort)
	if err != nil {
		return err
	}
	m.Gateway = m.Gateway.Unmap()
	data, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return fmt.Errorf("pcp: saving nonce: %w", err)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("pcp: saving nonce: %w", err)
	}
	tmp, err := os.CreateTemp(s.Dir, ".pcp-*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("pcp: saving nonce: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("pcp: saving nonce: %w", err)
	}
	// Flushed before the rename, so that after a crash the name holds
	// either the old entry or the new one, never an empty file.
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("pcp: saving nonce: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pcp: saving nonce: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("pcp: saving nonce: %w", err)
	}
	done = true
	return nil
}

// Load returns the entry for a mapping, or an error wrapping ErrNotStored
// (and fs.ErrNotExist) if there is none.
func (s NonceStore) Load(gateway netip.Addr, proto Protocol, internalPort uint16) (StoredMapping, error) {
	path, err := s.path(gateway, proto, internalPort)
	if err != nil {
		return StoredMapping{}, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return StoredMapping{}, fmt.Errorf("%w (%s %d via %s): %w", ErrNotStored, proto, internalPort, gateway, err)
	}
	if err != nil {
		return StoredMapping{}, fmt.Errorf("pcp: loading nonce: %w", err)
	}
	var m StoredMapping
	if err := json.Unmarshal(data, &m); err != nil {
		return StoredMapping{}, fmt.Errorf("pcp: %s is damaged (%w); delete it, and wait for the mapping to expire", path, err)
	}
	if m.Gateway != gateway.Unmap() || m.Protocol != proto || m.InternalPort != internalPort {
		return StoredMapping{}, fmt.Errorf("pcp: %s holds %s %d via %s, not the mapping its name says; delete it", path, m.Protocol, m.InternalPort, m.Gateway)
	}
	return m, nil
}

// Delete removes the entry for a mapping; removing an absent one succeeds.
func (s NonceStore) Delete(gateway netip.Addr, proto Protocol, internalPort uint16) error {
	path, err := s.path(gateway, proto, internalPort)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pcp: deleting nonce: %w", err)
	}
	return nil
}

// List returns every entry in the store, in no particular order. Files it
// cannot read are skipped: List serves listings and clean-ups, where one
// bad file should not hide the others.
func (s NonceStore) List() ([]StoredMapping, error) {
	if s.Dir == "" {
		return nil, errNoDir
	}
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pcp: listing nonces: %w", err)
	}
	var out []StoredMapping
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "pcp-") || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			continue
		}
		var m StoredMapping
		if json.Unmarshal(data, &m) == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

var errNoDir = errors.New("pcp: NonceStore.Dir is empty; set it (DefaultNonceDir gives the usual place)")

// path returns the file of a key: pcp-<gateway>-<protocol>-<port>.json,
// with the colons of IPv6 addresses replaced so that the name is valid on
// every file system.
func (s NonceStore) path(gateway netip.Addr, proto Protocol, internalPort uint16) (string, error) {
	if s.Dir == "" {
		return "", errNoDir
	}
	if !gateway.IsValid() {
		return "", errors.New("pcp: NonceStore: the gateway address is not set")
	}
	gw := strings.NewReplacer(":", "_", "%", "_").Replace(gateway.Unmap().String())
	var p string
	switch proto {
	case TCP:
		p = "tcp"
	case UDP:
		p = "udp"
	default:
		p = "proto" + strconv.Itoa(int(proto))
	}
	return filepath.Join(s.Dir, fmt.Sprintf("pcp-%s-%s-%d.json", gw, p, internalPort)), nil
}
