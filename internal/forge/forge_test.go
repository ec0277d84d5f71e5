package forge

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestReceive(t *testing.T) {
	t.Parallel()
	parsed := false
	w := Webhook{
		Name: "test",
		Verify: func(h http.Header, body []byte, secret string) error {
			if secret != "right" {
				return fmt.Errorf("missing X-Test-Signature header: %w", ErrSignature)
			}
			return nil
		},
		Parse: func(h http.Header, body []byte) ([]Event, error) {
			parsed = true
			if string(body) != "{}" {
				return nil, fmt.Errorf("body is not a JSON object: %w", ErrMalformed)
			}
			return []Event{{Forge: "test", Kind: Ping}}, nil
		},
	}
	if _, err := w.Receive(nil, []byte("{}"), "wrong"); !errors.Is(err, ErrSignature) || parsed {
		t.Errorf("Receive(wrong secret) = %v, parsed %v, want ErrSignature without parsing", err, parsed)
	}
	if _, err := w.Receive(nil, []byte("x"), "right"); !errors.Is(err, ErrMalformed) || err.Error() != "parse test webhook: body is not a JSON object: webhook payload malformed" {
		t.Errorf("Receive(bad body) = %v, want a wrapped ErrMalformed", err)
	}
	if got, err := w.Receive(nil, []byte("{}"), "right"); err != nil || len(got) != 1 || got[0].Kind != Ping {
		t.Errorf("Receive(good) = %v, %v, want one Ping", got, err)
	}
}
