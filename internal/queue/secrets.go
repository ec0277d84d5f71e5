package queue

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/store"
)

// addSecrets puts into a the values of the secrets its job names (its
// `secrets:`), or fails when one is not set or cannot be decrypted: a job
// never runs without a secret it asked for. A build of a pull request
// from a fork gets none, whatever its pipeline file says: it runs without
// them, and its log says which were withheld and why.
func (d *Dispatcher) addSecrets(ctx context.Context, b *store.Build, j *store.Job, pl *plan.Plan, a *Assignment) error {
	var names []string
	for _, pj := range pl.Jobs {
		if pj.Name == j.Name {
			names = pj.Secrets
		}
	}
	if len(names) == 0 {
		return nil
	}
	if b.FromFork {
		d.withheld(ctx, b, j, names)
		return nil
	}
	if d.opts.Secrets == nil {
		return fmt.Errorf("job %s names secrets (%s), and this server keeps none", j.Name, strings.Join(names, ", "))
	}
	values, err := d.opts.Secrets(ctx, b.Repo, b.Environment, names)
	if err != nil {
		return err
	}
	a.Secrets = values
	return nil
}

// withheld writes into the job's log, first, which secrets it does not
// receive and why.
func (d *Dispatcher) withheld(ctx context.Context, b *store.Build, j *store.Job, names []string) {
	noun := "secret"
	if len(names) > 1 {
		noun = "secrets"
	}
	msg := fmt.Sprintf("gantry: %s %s withheld: this build is of a pull request from a fork, whose code must not see %s's secrets; the job runs without them\n",
		noun, strings.Join(names, ", "), b.Repo)
	chunk := &store.LogChunk{Step: 0, Data: []byte(msg), CreatedAt: time.Now()}
	if err := d.store.AppendLogs(ctx, j.ID, j.LeaseToken, []*store.LogChunk{chunk}); err != nil {
		// The job runs without its secrets all the same.
		d.log.LogAttrs(ctx, slog.LevelWarn, "log withheld secrets", slog.Int64("build", b.ID), slog.String("job", j.Name), slog.Any("err", err))
		return
	}
	if d.opts.Logged != nil {
		d.opts.Logged(b.ID, j.ID)
	}
}
