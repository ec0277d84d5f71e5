// Package hook receives forge webhooks at /hooks/{forge}: it bounds the
// body, finds the repository by the payload's full name, checks the
// signature in constant time, and turns pushes, tags and pull requests into
// builds. A redelivery of the same delivery gets the existing build back.
package hook

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/store"
)

// MaxBody is the largest webhook body accepted.
const MaxBody = 10 << 20

// Counter counts webhook outcomes by forge and outcome, for /metrics.
type Counter func(forge, outcome string)

// Handler serves POST /hooks/{forge}.
type Handler struct {
	Store    store.Store
	Builds   *build.Service
	Webhooks map[string]forge.Webhook
	Log      *slog.Logger
	Count    Counter

	reqID atomic.Int64
}

// Register mounts the handler on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /hooks/{forge}", h.serve)
}

// Response is the body of a webhook answer.
type Response struct {
	Message string      `json:"message"`
	Builds  []api.Build `json:"builds,omitempty"`
}

type hookError struct {
	status  int
	outcome string
	msg     string
}

func (e *hookError) Error() string { return e.msg }

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("forge")
	status, outcome, resp, err := h.receive(w, r, name)
	if err != nil {
		var he *hookError
		if errors.As(err, &he) {
			status, outcome = he.status, he.outcome
			h.Log.LogAttrs(r.Context(), slog.LevelWarn, "webhook refused", slog.String("forge", name),
				slog.String("outcome", outcome), slog.String("remote", r.RemoteAddr), slog.String("reason", he.msg))
			api.WriteJSON(w, status, api.Error{Error: he.msg})
		} else {
			outcome = "error"
			api.WriteError(w, r, h.Log, err, &h.reqID)
		}
	} else {
		api.WriteJSON(w, status, resp)
	}
	if h.Count != nil {
		if _, known := h.Webhooks[name]; !known {
			name = "unknown" // a label per made-up path would grow /metrics for ever
		}
		h.Count(name, outcome)
	}
}

func (h *Handler) receive(w http.ResponseWriter, r *http.Request, name string) (int, string, *Response, error) {
	wh, ok := h.Webhooks[name]
	if !ok {
		return 0, "", nil, &hookError{http.StatusNotFound, "unknown_forge", fmt.Sprintf("no forge %q: use /hooks/github, /hooks/gitea, /hooks/gitlab or /hooks/bitbucket", name)}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return 0, "", nil, &hookError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body larger than %d bytes", MaxBody)}
		}
		return 0, "", nil, &hookError{http.StatusBadRequest, "bad_body", "cannot read body: " + err.Error()}
	}
	// The repository, and so the secret, is named in the payload: read it
	// first, act on nothing until the signature is checked.
	events, perr := wh.Parse(r.Header, body)
	if perr != nil || len(events) == 0 {
		// Check the signature of what cannot be parsed too, when we can
		// tell whose it is: otherwise report it as malformed.
		return 0, "", nil, &hookError{http.StatusBadRequest, "malformed", fmt.Sprintf("%v", perr)}
	}
	repoName := events[0].Repo
	if events[0].Kind == forge.Ping && repoName == "" {
		return 0, "", nil, &hookError{http.StatusBadRequest, "malformed", "ping without a repository"}
	}
	repo, err := h.Store.Repo(r.Context(), repoName)
	if errors.Is(err, store.ErrNotFound) {
		return 0, "", nil, &hookError{http.StatusNotFound, "unknown_repo", fmt.Sprintf("repository %q is not registered with this server", repoName)}
	}
	if err != nil {
		return 0, "", nil, err
	}
	if err := wh.Verify(r.Header, body, repo.WebhookSecret); err != nil {
		return 0, "", nil, &hookError{http.StatusUnauthorized, "bad_signature", err.Error()}
	}
	// Forgejo also signs the GitHub way: tie each route to the forge the
	// repository was registered with.
	if wh.Name != repo.Forge {
		return 0, "", nil, &hookError{http.StatusBadRequest, "wrong_forge", fmt.Sprintf("repository %q is registered as a %s repository; send its webhooks to /hooks/%s", repo.Name, repo.Forge, repo.Forge)}
	}

	resp := &Response{}
	created := false
	for i, ev := range events {
		switch {
		case ev.Kind == forge.Ping:
			resp.Message = "pong"
			continue
		case ev.Kind == forge.Ignored:
			resp.Message = ev.Reason
			continue
		case ev.Deleted:
			resp.Message = fmt.Sprintf("%s deleted: nothing to build", ev.Branch+ev.Tag)
			continue
		}
		t := triggerOf(ev, repo.Name)
		switch {
		case wh.Name == "bitbucket" || wh.Name == "gitea":
			// Their redeliveries carry a new delivery ID: the same event is
			// the same ref at the same commit.
			t.DeliveryID = contentID(ev)
		case len(events) > 1 && t.DeliveryID != "":
			t.DeliveryID += "#" + strconv.Itoa(i)
		}
		b, isNew, err := h.Builds.Create(r.Context(), repo, t)
		if err != nil {
			return 0, "", nil, err
		}
		if isNew {
			if err := h.audit(r, wh.Name, b); err != nil {
				return 0, "", nil, err
			}
		}
		created = created || isNew
		resp.Builds = append(resp.Builds, api.BuildOf(b))
	}
	switch {
	case created:
		resp.Message = "build created"
		return http.StatusCreated, "build", resp, nil
	case len(resp.Builds) > 0:
		resp.Message = "already delivered: the existing build is returned"
		return http.StatusOK, "duplicate", resp, nil
	case events[0].Kind == forge.Ping:
		return http.StatusOK, "ping", resp, nil
	}
	return http.StatusAccepted, "ignored", resp, nil
}

// contentID identifies an event by what it asks to build, for forges whose
// redeliveries get new delivery IDs.
func contentID(ev forge.Event) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%s\x00%d\x00%s", ev.Forge, ev.Kind, ev.Branch, ev.Tag, ev.Commit, ev.PullRequest, ev.BaseBranch)))
	return "content:" + hex.EncodeToString(h[:16])
}

func triggerOf(ev forge.Event, repo string) build.Trigger {
	t := build.Trigger{
		Trigger: plan.Trigger{Branch: ev.Branch, Tag: ev.Tag, Commit: ev.Commit, Repo: repo,
			BaseBranch: ev.BaseBranch, ChangedPaths: ev.ChangedPaths},
		DeliveryID: ev.DeliveryID, PullRequest: ev.PullRequest, Title: ev.Title,
		Author: ev.Author, Message: ev.Message, Before: ev.Before, FromFork: ev.FromFork,
	}
	switch ev.Kind {
	case forge.Tag:
		t.Event = plan.EventTag
	case forge.PullRequest:
		t.Event = plan.EventPullRequest
	default:
		t.Event = plan.EventPush
	}
	return t
}
