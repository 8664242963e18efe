// Package threadpin starts child processes that carry a parent-death signal
// (SysProcAttr.Pdeathsig) from an OS thread that stays locked for as long as
// the child needs it.
//
// Linux sends the parent-death signal when the *thread* that forked the
// child exits, not when the process does. Go ends a thread whenever a
// goroutine exits while locked to it, and the sandbox does exactly that on
// purpose (a thread whose umask it changed must never run other
// goroutines). A child started from an ordinary, unlocked thread would then
// be killed whenever that thread happened to be the one given to such a
// goroutine: a kiwi build, the embedded S3 server or a test registry dying
// at random. Starting every such child from a locked thread that is
// released only after the child has exited rules that out.
package threadpin

import (
	"os/exec"
	"runtime"
	"sync"
)

// Start starts cmd from a locked OS thread and returns the function that
// releases the thread; call it once cmd has exited (after Wait). Calling
// release more than once is harmless. When Start fails, nothing needs
// releasing (release is a no-op).
func Start(cmd *exec.Cmd) (release func(), err error) {
	errc := make(chan error, 1)
	rel := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		err := cmd.Start()
		errc <- err
		if err == nil {
			<-rel
		}
		runtime.UnlockOSThread()
	}()
	if err := <-errc; err != nil {
		return func() {}, err
	}
	var once sync.Once
	return func() { once.Do(func() { close(rel) }) }, nil
}

// Run is cmd.Run with cmd started by [Start].
func Run(cmd *exec.Cmd) error {
	release, err := Start(cmd)
	if err != nil {
		return err
	}
	defer release()
	return cmd.Wait()
}
