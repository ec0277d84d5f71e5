package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/bitbucket"
	"github.com/gantry-ci/gantry/internal/forge/gitea"
	"github.com/gantry-ci/gantry/internal/forge/github"
	"github.com/gantry-ci/gantry/internal/forge/gitlab"
	"github.com/gantry-ci/gantry/internal/notify"
	"github.com/gantry-ci/gantry/internal/secret"
	"github.com/gantry-ci/gantry/internal/store"
)

// newNotifier makes the notifier of commit statuses and hooks, with its
// build links under the configured public URL, or http://addr. It claims
// deliveries as HOSTNAME:PORT, like the built-in agent's name: on restart
// it takes back what it was sending when it died.
func (s *Server) newNotifier(st store.Store, addr *net.TCPAddr, vault *secret.Vault) *notify.Notifier {
	o := s.cfg.Notify
	if o.Credentials == nil {
		o.Credentials = forgeToken(vault)
		o.CredentialsHint = "set the repo's secret " + ForgeTokenSecret + " (gantry secret set OWNER/NAME " + ForgeTokenSecret + ")"
	}
	host, _ := os.Hostname()
	o.Name = host + ":" + strconv.Itoa(addr.Port)
	if o.PublicURL == "" {
		o.PublicURL = "http://" + addr.String()
		if addr.IP.IsUnspecified() {
			s.cfg.Log.LogAttrs(context.Background(), slog.LevelWarn,
				"build links in commit statuses and events point at an unspecified address: set --public-url", slog.String("url", o.PublicURL))
		}
	}
	o.Reporters = map[string]forge.Reporter{
		"github": github.Reporter(), "gitea": gitea.Reporter(), "forgejo": gitea.Reporter(),
		"gitlab": gitlab.Reporter(), "bitbucket": bitbucket.Reporter(),
	}
	o.Log = s.cfg.Log
	o.UserAgent = "Gantry/" + s.cfg.Version
	return notify.New(st, o)
}

// ForgeTokenSecret is the repo secret that holds the token commit
// statuses are posted with.
const ForgeTokenSecret = "FORGE_TOKEN"

// forgeToken reads a repo's forge token from its secrets; a repo without
// one has no credentials, which is no error.
func forgeToken(vault *secret.Vault) notify.Credentials {
	return func(ctx context.Context, repo string) (string, error) {
		vals, err := vault.Values(ctx, repo, []string{ForgeTokenSecret})
		if errors.Is(err, secret.ErrNotSet) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		return vals[ForgeTokenSecret], nil
	}
}
