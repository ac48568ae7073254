// Package browsertest drives a headless Chromium for the tests of
// portfwd's two web pages (the client's web UI and the gateway's admin
// page), through chromedp: load a page, click, type, wait for what the
// page shows, read values out of it, take screenshots, and fail the test
// on a script error in the page.
//
// It lives under internal/ so that chromedp and cdproto, which only tests
// need, stay out of the module graph of programs that use portfwd's
// libraries.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/portfwd/portfwd/internal/testenv"
)

// ChromiumPath is Debian's chromium package, which
// scripts/install-lab-deps.sh installs.
const ChromiumPath = "/usr/bin/chromium"

// stepTimeout bounds one step of a browser test.
const stepTimeout = 15 * time.Second

// BrowserOptions configure NewBrowser.
type BrowserOptions struct {
	// Command, when set, adjusts the browser's command line before it
	// starts: a lab test uses it to run the browser inside a network
	// namespace (ip netns exec), where the page is served on loopback. It
	// replaces chromedp's own adjustment, so it must set
	// SysProcAttr.Pdeathsig itself for the browser to die with the test.
	// The browser talks to the test over a pipe, which survives the exec.
	Command func(cmd *exec.Cmd)
}

// Browser drives one tab of a headless Chromium that belongs to one test.
// Script exceptions and console errors in the page are recorded, and
// CheckProblems fails the test for them.
type Browser struct {
	t testing.TB
	// Ctx is the tab's context, for chromedp calls of the test's own.
	Ctx context.Context

	mu       sync.Mutex
	problems []string
}

// NewBrowser starts a headless Chromium with a fresh profile and a home
// directory of its own (Chromium keeps a certificate database in
// ~/.pki and settings in ~/.config and ~/.cache whatever its profile),
// stopped when the test ends. It skips the test when Chromium is not installed, unless
// PORTFWD_LAB_REQUIRED=1 makes that a failure.
func NewBrowser(t testing.TB, o BrowserOptions) *Browser {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		testenv.Missing(t, "browser test: %s is missing; install it with scripts/install-lab-deps.sh (apt-get install chromium)", ChromiumPath)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(ChromiumPath),
		chromedp.NoSandbox, // running as root in a container
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-proxy-server", true),
		// Belt and braces against stray traffic: the browser resolves no
		// name at all, so its background services reach nothing; the page
		// is on 127.0.0.1.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Env(browserHome(t)...),
		chromedp.WindowSize(1280, 900),
	)
	if o.Command != nil {
		opts = append(opts, chromedp.ModifyCmdFunc(o.Command))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &Browser{t: t, Ctx: ctx}
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			desc := ""
			if d.Exception != nil {
				desc = d.Exception.Description
			}
			b.problem("script exception at %s:%d: %s %s", d.URL, d.LineNumber+1, d.Text, desc)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value))
				}
				b.problem("console.error: %s", strings.Join(args, " "))
			}
		}
	}); err != nil {
		t.Fatalf("starting %s: %v", ChromiumPath, err)
	}
	return b
}

// browserHome returns the variables that give the browser an empty home
// directory of its own, removed when t ends.
func browserHome(t testing.TB) []string {
	home := t.TempDir()
	return []string{"HOME=" + home, "XDG_CONFIG_HOME=" + home + "/.config", "XDG_CACHE_HOME=" + home + "/.cache", "XDG_DATA_HOME=" + home + "/.local/share"}
}

func (b *Browser) problem(format string, a ...any) {
	b.mu.Lock()
	b.problems = append(b.problems, fmt.Sprintf(format, a...))
	b.mu.Unlock()
}

// CheckProblems fails the test for every script error seen so far.
func (b *Browser) CheckProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("in the page: %s", p)
	}
	b.problems = nil
}

// Do runs steps, failing the test with what on error.
func (b *Browser) Do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.CheckProblems()
		b.t.Fatalf("%s: %v", what, err)
	}
}

// Eval evaluates a JavaScript expression in the page (awaiting a
// promise) and returns its value.
func Eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// WaitFor waits until the JavaScript condition holds; on failure the test
// shows what the page's main part says.
func (b *Browser) WaitFor(what, cond string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+cond+")", chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		b.CheckProblems()
		b.t.Fatalf("waiting for %s (%s): %v\nthe page reads:\n%s", what, cond, err,
			Eval[string](b, `(document.querySelector('main') || document.body).innerText.slice(0, 3000)`))
	}
}

// Click clicks the element sel selects once there is one. The page looks
// it up and clicks it in one go: a table that live updates redraw may
// replace the element between the two steps of chromedp.Click.
func (b *Browser) Click(what, sel string) {
	b.t.Helper()
	b.WaitFor(what, fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (e) e.click(); return !!e; })()`, sel))
}

// Screenshot resizes the viewport to w×h and returns a PNG of the whole
// page.
func (b *Browser) Screenshot(w, h int64) []byte {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(w, h)); err != nil {
		b.t.Fatalf("resizing to %dx%d: %v", w, h, err)
	}
	time.Sleep(200 * time.Millisecond) // let the layout settle
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	return png
}
