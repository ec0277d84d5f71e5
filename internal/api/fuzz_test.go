package api_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/sqlite"
)

// FuzzParseExpiry: any input is a life within bounds or a clear error.
func FuzzParseExpiry(f *testing.F) {
	for _, s := range []string{"", "never", "30d", "0d", "3651d", "12h", "59s", "-1h", "1e9h", "d", "９d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := api.ParseExpiry(s)
		if err != nil {
			if !strings.Contains(err.Error(), "expires") {
				t.Errorf("ParseExpiry(%q) error %q does not say what was wrong", s, err)
			}
			return
		}
		if d != 0 && (d < time.Minute || d > 3650*24*time.Hour) {
			t.Errorf("ParseExpiry(%q) = %v, out of bounds", s, d)
		}
	})
}

// FuzzAuthorization: no Authorization header but the exact one of a valid
// token is let in, and none makes the server fail.
func FuzzAuthorization(f *testing.F) {
	const secret = "gantry_0123456789abcdef"
	for _, s := range []string{"Bearer " + secret, "Bearer " + secret + " ", "bearer " + secret, "Bearer", "Bearer ",
		"Basic Zm9vOmJhcg==", "Bearer " + strings.ToUpper(secret), "Bearer \x00", "Bearer " + secret[:10]} {
		f.Add(s)
	}
	st, err := sqlite.Open(f.Context(), filepath.Join(f.TempDir(), "gantry.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	u := &store.User{Name: "alice"}
	if err := st.CreateUser(f.Context(), u); err != nil {
		f.Fatal(err)
	}
	if err := st.CreateToken(f.Context(), &store.Token{Name: "t", Hash: api.HashToken(secret), UserID: u.ID}); err != nil {
		f.Fatal(err)
	}
	h := &api.Handler{Store: st}
	mux := http.NewServeMux()
	h.Register(mux)
	var seq atomic.Int64
	f.Fuzz(func(t *testing.T, header string) {
		req := httptest.NewRequest("GET", "/api/v1/whoami", nil)
		req.Header["Authorization"] = []string{header}
		// Each input from its own address, so the limiter stays out of it.
		n := seq.Add(1)
		req.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:1234", n>>16&255, n>>8&255, n&255)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		want := http.StatusUnauthorized
		if header == "Bearer "+secret {
			want = http.StatusOK
		}
		if rec.Code != want {
			t.Errorf("Authorization %q: %d, want %d", header, rec.Code, want)
		}
	})
}
