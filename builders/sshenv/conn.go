package sshenv

import (
	"context"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// handshakeTimeout bounds the SSH handshake and authentication of a
// connection.
const handshakeTimeout = 30 * time.Second

// accept serves connections on ln until it is closed.
func (s *server) accept(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.untrack(c)
			defer c.Close()
			s.serveConn(ctx, c)
		}()
	}
}

// serveConn runs the SSH protocol on c, serving its session channels.
func (s *server) serveConn(ctx context.Context, c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(c, s.ssh)
	if err != nil {
		s.log.Info("handshake", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	defer sc.Close()
	log := s.log.With("user", sc.User(), "remote", sc.RemoteAddr().String())
	if sc.Permissions != nil {
		log = log.With("key", sc.Permissions.Extensions["key"])
	}
	log.Info("login")
	go ssh.DiscardRequests(reqs)

	var wg sync.WaitGroup
	defer wg.Wait()
	id := 0
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.Prohibited, "only session channels are allowed")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			log.Info("accept channel", "err", err)
			continue
		}
		id++
		sess := &session{srv: s, ch: ch, log: log.With("session", id)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess.serve(ctx, creqs)
		}()
	}
}
