package cluster

import (
	"bufio"
	"net"
	"testing"
	"time"
)

func TestProxyBlock(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() { // echo server
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := c.Write([]byte(line)); err != nil {
				return
			}
		}
	}()
	p, err := NewProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	echo := func(s string, wait time.Duration) (string, error) {
		if _, err := c.Write([]byte(s + "\n")); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		return br.ReadString('\n')
	}
	if got, err := echo("one", 5*time.Second); err != nil || got != "one\n" {
		t.Fatalf("echo: %q %v", got, err)
	}
	p.Block()
	if got, err := echo("two", 300*time.Millisecond); err == nil {
		t.Fatalf("blocked proxy let %q through", got)
	}
	p.Unblock()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := br.ReadString('\n'); err != nil || got != "two\n" {
		t.Fatalf("held-back line: %q %v", got, err)
	}
	c.Close()
	p.Close()
	<-done
}
