package pcp

import "log/slog"

// LogValue shows a request in debug logs by its fields (the opcode is
// left to the logger, which the client gives it).
func (r Request) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Int("lifetime", int(r.Lifetime)),
		slog.String("client", r.ClientAddr.String())}
	attrs = append(attrs, mapAttrs(r.Map, r.Peer)...)
	if len(r.Options) > 0 {
		attrs = append(attrs, slog.Int("options", len(r.Options)))
	}
	return slog.GroupValue(attrs...)
}

// LogValue shows a response in debug logs by its fields (the opcode is
// left to the logger, which the client gives it).
func (r Response) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("result", r.Result.String()),
		slog.Int("lifetime", int(r.Lifetime)), slog.Int("epoch", int(r.Epoch))}
	attrs = append(attrs, mapAttrs(r.Map, r.Peer)...)
	if len(r.Options) > 0 {
		attrs = append(attrs, slog.Int("options", len(r.Options)))
	}
	return slog.GroupValue(attrs...)
}

func mapAttrs(m *MapPayload, p *PeerPayload) []slog.Attr {
	if p != nil {
		m = &p.MapPayload
	}
	if m == nil {
		return nil
	}
	attrs := []slog.Attr{slog.String("protocol", m.Protocol.String()), slog.Int("internal_port", int(m.InternalPort)),
		slog.Int("external_port", int(m.ExternalPort))}
	if m.ExternalAddr.IsValid() {
		attrs = append(attrs, slog.String("external_addr", m.ExternalAddr.String()))
	}
	if p != nil {
		attrs = append(attrs, slog.String("remote", p.RemoteAddr.String()), slog.Int("remote_port", int(p.RemotePort)))
	}
	return attrs
}
