//go:build linux

package nft

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNetNS runs fn on an OS thread that has entered the network namespace
// nsFd (when it is non-zero; otherwise fn runs in place). Sockets and files
// fn opens belong to that namespace for their whole life, even when used
// from other goroutines later, which is what reading /proc/sys/net or
// listing interfaces of another namespace needs. fn must not start work
// on other goroutines that expects to be in the namespace.
func inNetNS(nsFd int, fn func() error) error {
	if nsFd == 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening own network namespace: %w", err)
			return
		}
		defer self.Close()
		if err := unix.Setns(nsFd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime then ends it with this
			// goroutine instead of scheduling others in the wrong namespace.
			errc <- fmt.Errorf("leaving network namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
