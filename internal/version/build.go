package version

import (
	"runtime"
	"runtime/debug"
)

// Build is what a binary knows of how it was built, from the Go
// toolchain's build information (debug.ReadBuildInfo).
type Build struct {
	// Version is portfwd's version (the constant Version).
	Version string `json:"version"`
	// Module is the main module's version: a tag such as v0.1.0 for a
	// binary built by "go install ...@version", "(devel)" for one built
	// in a checkout.
	Module string `json:"module_version"`
	// Revision is the VCS commit the binary was built from, and Time its
	// commit time (RFC 3339), when the build recorded them (a build in a
	// git checkout does, unless -buildvcs=false).
	Revision string `json:"revision"`
	Time     string `json:"revision_time"`
	// Modified is true when the checkout had uncommitted changes.
	Modified bool `json:"modified"`
	// Go is the Go version that built the binary; OS and Arch its target.
	Go   string `json:"go"`
	OS   string `json:"os"`
	Arch string `json:"arch"`
}

// ReadBuild returns the running binary's Build.
func ReadBuild() Build {
	b := Build{Version: Version, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Module = info.Main.Version
	b.Go = info.GoVersion
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// String is one line: "portfwd 0.1 (v0.1.0, revision 1a2b3c4d5e6f, dirty;
// go1.26.8 linux/amd64)". The revision is cut to 12 characters.
func (b Build) String() string {
	s := "portfwd " + b.Version + " ("
	if b.Module != "" {
		s += "module " + b.Module + ", "
	}
	switch {
	case b.Revision == "":
		s += "revision unknown"
	case len(b.Revision) > 12:
		s += "revision " + b.Revision[:12]
	default:
		s += "revision " + b.Revision
	}
	if b.Time != "" {
		s += " of " + b.Time
	}
	if b.Modified {
		s += ", dirty"
	}
	return s + "; built with " + b.Go + " " + b.OS + "/" + b.Arch + ")"
}
