package api

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Guessing tokens: each address may send authFailBurst wrong tokens at
// once, then one more every authFailEvery. Right tokens cost nothing.
const (
	authFailBurst = 20
	authFailEvery = 3 * time.Second
	// authLimitMax bounds the addresses remembered; beyond it, those that
	// have earned back their whole allowance are forgotten first.
	authLimitMax = 10000
)

// authLimiter counts wrong tokens per address.
type authLimiter struct {
	mu    sync.Mutex
	addrs map[string]*rate.Limiter
}

// blocked returns how long addr must wait before its next token is looked
// at, or 0.
func (l *authLimiter) blocked(addr string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.addrs[addr]
	if lim == nil {
		return 0
	}
	now := time.Now()
	if lim.TokensAt(now) >= 1 {
		return 0
	}
	r := lim.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return max(wait, time.Millisecond)
}

// failed counts a wrong token from addr.
func (l *authLimiter) failed(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.addrs == nil {
		l.addrs = map[string]*rate.Limiter{}
	}
	lim := l.addrs[addr]
	if lim == nil {
		if len(l.addrs) >= authLimitMax {
			l.prune()
		}
		lim = rate.NewLimiter(rate.Every(authFailEvery), authFailBurst)
		l.addrs[addr] = lim
	}
	lim.Allow()
}

// prune forgets the addresses whose allowance is whole again, and, when
// that is not enough, every address: a flood of fresh addresses must not
// grow the map without bound.
func (l *authLimiter) prune() {
	now := time.Now()
	for a, lim := range l.addrs {
		if lim.TokensAt(now) >= authFailBurst {
			delete(l.addrs, a)
		}
	}
	if len(l.addrs) >= authLimitMax {
		clear(l.addrs)
	}
}

// tooManyRequests is a refusal to look at an address's token for wait.
type tooManyRequests struct{ wait time.Duration }

func (e *tooManyRequests) Error() string {
	return fmt.Sprintf("too many invalid tokens from this address: try again in %s", e.wait.Round(time.Second)+time.Second)
}

// remoteHost is the host of the request's remote address, without the
// port. Behind a reverse proxy it is the proxy's.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
