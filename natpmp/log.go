package natpmp

import "log/slog"

// LogValue shows a request in debug logs by its fields (the opcode is
// left to the logger, which the client gives it).
func (r Request) LogValue() slog.Value {
	if !r.Op.isMap() {
		return slog.GroupValue()
	}
	return slog.GroupValue(slog.Int("internal_port", int(r.InternalPort)),
		slog.Int("suggested_external_port", int(r.SuggestedExternalPort)),
		slog.Int("lifetime", int(r.Lifetime)))
}

// LogValue shows a response in debug logs by its fields (the opcode is
// left to the logger, which the client gives it).
func (r Response) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("result", r.Result.String()),
		slog.Int("epoch", int(r.Epoch))}
	switch {
	case r.Op.isMap():
		attrs = append(attrs, slog.Int("internal_port", int(r.InternalPort)),
			slog.Int("external_port", int(r.ExternalPort)), slog.Int("lifetime", int(r.Lifetime)))
	case r.ExternalAddr.IsValid():
		attrs = append(attrs, slog.String("external_addr", r.ExternalAddr.String()))
	}
	return slog.GroupValue(attrs...)
}
