package server

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gantry-ci/gantry/internal/secret"
	"github.com/gantry-ci/gantry/internal/store"
)

// KeyFile is the name of the secret key file in the data dir, used when
// GANTRY_SECRET_KEY is not set.
const KeyFile = "secret.key"

// parseSecretKey checks GANTRY_SECRET_KEY's value, when set, before
// anything starts.
func parseSecretKey(value string) (*secret.Keyring, error) {
	if value == "" {
		return nil, nil
	}
	raw, err := secret.ParseKeys(value)
	if err != nil {
		return nil, fmt.Errorf("GANTRY_SECRET_KEY: %w", err)
	}
	return secret.NewKeyring(raw...)
}

// openKeyring returns the keys secrets are encrypted with: those of
// GANTRY_SECRET_KEY, or else those of the key file in the data dir,
// which is created on first start.
func (s *Server) openKeyring(ctx context.Context) (*secret.Keyring, error) {
	if s.keys != nil {
		return s.keys, nil
	}
	path := filepath.Join(s.cfg.DataDir, KeyFile)
	keys, created, err := secret.OpenKeyFile(path)
	if err != nil {
		return nil, err
	}
	if created {
		s.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "created the secret key file: back it up apart from the database, without it the secrets in the database cannot be read",
			slog.String("path", path), slog.String("key_id", keys.Newest()))
	}
	return keys, nil
}

// startVault finishes a key rotation a crash interrupted, and warns of
// secrets this server cannot decrypt.
func (s *Server) startVault(ctx context.Context, st store.Store, keys *secret.Keyring) *secret.Vault {
	v := secret.NewVault(st, keys)
	r, err := v.Resume(ctx)
	switch {
	case err != nil:
		s.cfg.Log.LogAttrs(ctx, slog.LevelError, "finish the interrupted secret key rotation", slog.Any("err", err))
	case r != nil:
		s.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "finished an interrupted secret key rotation", slog.String("key_id", r.KeyID),
			slog.Int("reencrypted", r.Reencrypted), slog.Any("retired", r.Retired), slog.Any("failed", r.Failed))
	}
	unreadable, err := v.Unreadable(ctx)
	if err != nil {
		s.cfg.Log.LogAttrs(ctx, slog.LevelError, "check secrets", slog.Any("err", err))
	}
	if len(unreadable) > 0 {
		var ids []string
		n := 0
		for id, c := range unreadable {
			ids = append(ids, id)
			n += c
		}
		slices.Sort(ids)
		s.cfg.Log.LogAttrs(ctx, slog.LevelError, "secrets are encrypted under keys this server does not have: jobs that name them will fail; start it with the key they were set under (GANTRY_SECRET_KEY, or the data dir's secret.key; several servers over one database need the same GANTRY_SECRET_KEY)",
			slog.Int("secrets", n), slog.String("their_keys", strings.Join(ids, ",")), slog.String("this_servers_keys", strings.Join(keys.IDs(), ",")))
	}
	return v
}
