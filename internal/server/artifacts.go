package server

import (
	"context"
	"log/slog"
	"time"
)

// sweepArtifacts keeps the artifact store to its retention until ctx
// ends: records of artifacts older than ArtifactRetention that no release
// refers to are removed, then every file no record names. It looks a
// quarter of the retention apart, between a second and an hour.
func (s *Server) sweepArtifacts(ctx context.Context) {
	every := time.Hour
	if r := s.cfg.ArtifactRetention; r > 0 {
		every = min(max(r/4, time.Second), time.Hour)
	}
	for {
		s.sweepOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func (s *Server) sweepOnce(ctx context.Context) {
	expired := 0
	if r := s.cfg.ArtifactRetention; r > 0 {
		n, err := s.store.ExpireArtifacts(ctx, time.Now().Add(-r))
		if err != nil {
			if ctx.Err() == nil {
				s.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "expire artifacts", slog.Any("err", err))
			}
			return
		}
		expired = n
	}
	removed, err := s.artifacts.Sweep(ctx, s.store.ArtifactInUse)
	if err != nil && ctx.Err() == nil {
		s.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "sweep artifact files", slog.Any("err", err))
	}
	if expired > 0 || removed > 0 {
		s.cfg.Log.LogAttrs(ctx, slog.LevelInfo, "artifacts swept", slog.Int("expired", expired), slog.Int("files_removed", removed))
	}
}
