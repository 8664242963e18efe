// Command imsbuild builds HPE Cray IMS-compatible boot images from
// declarative HCL build files, skipping every step whose result is cached.
//
// Exit codes: 0 success, 1 build failure (build --check: a difference), 2
// usage or configuration error (build --check: a step not yet built), 130
// cancelled (SIGINT/SIGTERM).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/imsbuild/imsbuild/builders/kiwi"
	"github.com/imsbuild/imsbuild/builders/sandbox"
)

// Exit codes.
const (
	exitOK        = 0
	exitFailed    = 1
	exitUsage     = 2
	exitCancelled = 130
)

// usageError marks errors in how imsbuild was called or configured (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// reportedError is a failure already printed through events or diagnostics.
type reportedError struct{ code int }

func (e reportedError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	sandbox.MaybeRunInit()
	kiwi.MaybeRunBootstrapShim()
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	root.SetArgs(normalizeArgs(args))
	err := root.ExecuteContext(ctx)
	var rep reportedError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &rep):
		return rep.code
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "imsbuild: cancelled")
		return exitCancelled
	}
	fmt.Fprintln(os.Stderr, "imsbuild:", printable(err.Error()))
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return exitUsage
	}
	return exitFailed
}

// isCobraUsage recognizes cobra's flag and argument errors.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown flag", "unknown shorthand", "unknown command", "flag needs an argument", "invalid argument", "accepts ", "requires "} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// normalizeArgs accepts Packer's single-dash long flags (-var, -var-file,
// -check) by rewriting them to the double-dash form the flag parser wants.
func normalizeArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		for _, name := range []string{"var-file", "var", "check", "explain", "json", "keep-going", "cache-dir", "interactive"} {
			if a == "-"+name || strings.HasPrefix(a, "-"+name+"=") {
				a = "-" + a
				break
			}
		}
		out[i] = a
	}
	return out
}
