// Package pgtest gives a test a PostgreSQL database of its own, in the
// server GANTRY_TEST_POSTGRES names (./test.sh starts a throwaway one and
// sets it). It is for tests only, like net/http/httptest.
//
// A test that needs PostgreSQL fails, rather than skips, when the variable
// is not set: a suite that quietly skips the store that several servers
// share would pass without testing it.
package pgtest

import (
	"context"
	"crypto/rand"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvVar names the server tests use: a URL (or key=value connection
// string) of a database whose role may create databases.
const EnvVar = "GANTRY_TEST_POSTGRES"

// URL creates an empty database with a random name and returns a URL of
// it; the database is dropped when t ends, after the cleanups t registers
// later (which close what uses it) have run. Tests that each call URL are
// isolated from each other and may run in parallel.
func URL(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvVar)
	if admin == "" {
		t.Fatal(EnvVar + " is not set: run ./test.sh, which starts PostgreSQL")
	}
	// rand.Text is base32: letters and digits, lowercased a valid name.
	name := "gantry_test_" + strings.ToLower(rand.Text()[:16])
	exec(t, admin, "CREATE DATABASE "+name)
	t.Cleanup(func() {
		// FORCE ends the sessions a failed test left behind.
		exec(t, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return withDatabase(t, admin, name)
}

func exec(t testing.TB, admin, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", EnvVar, err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// withDatabase is the connection string admin with its database replaced.
func withDatabase(t testing.TB, admin, name string) string {
	t.Helper()
	if strings.HasPrefix(admin, "postgres://") || strings.HasPrefix(admin, "postgresql://") {
		u, err := url.Parse(admin)
		if err != nil {
			t.Fatalf("pgtest: %s is not a URL: %v", EnvVar, err)
		}
		u.Path, u.RawPath = "/"+name, ""
		q := u.Query()
		q.Set("pool_max_conns", poolMaxConns)
		u.RawQuery = q.Encode()
		return u.String()
	}
	// key=value: a later key overrides an earlier one.
	return admin + " dbname=" + name + " pool_max_conns=" + poolMaxConns
}

// poolMaxConns caps each test store's pool (pgxpool reads it from the
// URL), whose default grows with the CPUs: on a machine with many, the
// tests running in parallel would otherwise open more connections than
// the server takes.
const poolMaxConns = "8"
