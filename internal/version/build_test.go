package version

import "testing"

func TestBuildString(t *testing.T) {
	for _, tt := range []struct {
		b    Build
		want string
	}{
		{Build{Version: "0.1", Module: "v0.1.0", Revision: "0123456789abcdef0123", Time: "2026-01-02T03:04:05Z", Modified: true, Go: "go1.26.8", OS: "linux", Arch: "mipsle"},
			"portfwd 0.1 (module v0.1.0, revision 0123456789ab of 2026-01-02T03:04:05Z, dirty; built with go1.26.8 linux/mipsle)"},
		{Build{Version: "0.1", Go: "go1.26.8", OS: "linux", Arch: "amd64"},
			"portfwd 0.1 (revision unknown; built with go1.26.8 linux/amd64)"},
	} {
		if got := tt.b.String(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
	if b := ReadBuild(); b.Version != Version || b.Go == "" || b.OS == "" {
		t.Errorf("ReadBuild: %+v", b)
	}
}
