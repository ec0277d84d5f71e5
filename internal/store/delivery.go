package store

import (
	"context"
	"time"
)

// Delivery kinds: a commit status posted to a forge's API, an event
// posted to a subscribed URL (an outbound webhook or a chat message), or a
// deployment's status posted to a forge's deployments API (GitHub's), which
// first makes the forge's deployment when it has none (SetForgeDeployment).
const (
	DeliveryStatus     = "status"
	DeliveryHook       = "hook"
	DeliveryDeployment = "deployment"
)

// Delivery states. A delivery is pending until a server claims it; it is
// sending while one posts it (under a lease, like a job); then it is
// delivered, pending again for a retry, or failed for good. One that a
// newer delivery with the same CoalesceKey replaced before it was sent is
// superseded; one recorded only to say why nothing is sent is skipped.
//
//	          claim                 2xx
//	pending ─────────► sending ─────────────► delivered
//	   ▲  │               │  │  4xx, too many attempts
//	   │  │               │  └─────────────────► failed
//	   │  │ newer with    │ 5xx, 429, network error
//	   │  │ its key       │ (lease lost: claimed again)
//	   │  ▼               │
//	   │ superseded       │
//	   └──────────────────┘
const (
	DeliveryPending    = "pending"
	DeliverySending    = "sending"
	DeliveryDelivered  = "delivered"
	DeliveryFailed     = "failed"
	DeliverySuperseded = "superseded"
	DeliverySkipped    = "skipped"
)

// DeliveryFinal reports whether a delivery state is final.
func DeliveryFinal(state string) bool {
	switch state {
	case DeliveryDelivered, DeliveryFailed, DeliverySuperseded, DeliverySkipped:
		return true
	}
	return false
}

// Delivery is one HTTP POST the server owes someone: a commit status for a
// forge, or an event for a hook. It is stored before it is sent, so a
// delivery survives a restart of the server, and several servers over one
// database send each delivery once at a time (ClaimDeliveries).
//
// What is secret is not stored here: a forge token is looked up, and a
// hook's signature computed, when the delivery is sent.
type Delivery struct {
	ID   int64
	Kind string // DeliveryStatus, DeliveryHook or DeliveryDeployment
	// RepoID is the repository the delivery is about, or 0; Repo is its
	// name, filled in on reads.
	RepoID  int64
	Repo    string
	BuildID int64 // 0 when it is about no build
	// HookID is the hook a DeliveryHook goes to; its URL and secret are
	// read from the hook when it is sent.
	HookID int64
	// Forge is the forge whose API a DeliveryStatus or DeliveryDeployment
	// goes to.
	Forge string
	// Event is what the delivery says: an event name (build.finished) for
	// a hook, the status context (gantry/test) for a forge.
	Event string
	// URL is where it is posted; for a hook, the hook's URL with its
	// secret parts left out, for display.
	URL string
	// Host is the host:port of URL. A rate limit holds every delivery to
	// one host (HoldDeliveries).
	Host string
	// Headers are sent with the payload; none of them is secret.
	Headers map[string]string
	Payload []byte
	// DedupeKey, when not empty, is unique: a second delivery with the
	// same key is not stored (EnqueueDeliveries).
	DedupeKey string
	// CoalesceKey groups deliveries of which only the newest matters (the
	// statuses of one context on one commit): a newer one supersedes the
	// pending older ones, and waits while an older one is being sent.
	CoalesceKey string
	State       string
	// Attempts counts the times the delivery was claimed to be sent.
	Attempts int
	// NextAttemptAt is when a pending delivery is due.
	NextAttemptAt time.Time
	// ClaimedBy, LeaseToken and LeaseExpires describe the claim while it
	// is sending: which server claimed it, and until when.
	ClaimedBy    string
	LeaseToken   int64
	LeaseExpires time.Time
	// LastStatus is the HTTP status of the last attempt, 0 when there was
	// no answer; LastError says what went wrong, or why it was skipped.
	LastStatus int
	LastError  string
	CreatedAt  time.Time
	// FinishedAt is when the delivery reached a final state.
	FinishedAt time.Time
}

// DeliveryFilter selects deliveries; empty fields select everything.
type DeliveryFilter struct {
	Repo    string
	State   string
	Kind    string
	BuildID int64
	// Limit caps the number returned; 0 means 50.
	Limit int
}

// Hook formats: what a hook's payload looks like.
const (
	// HookJSON is Gantry's own JSON event, signed.
	HookJSON = "json"
	// HookSlack is a Slack-compatible incoming-webhook message,
	// {"text": "..."}, which Mattermost and Zulip's Slack endpoint take too.
	HookSlack = "slack"
)

// Hook is a URL subscribed to events.
type Hook struct {
	ID  int64
	URL string
	// Secret keys the HMAC-SHA256 signature of every delivery.
	Secret string
	// Events are event names or globs (build.*, deployment.*).
	Events []string
	// RepoID limits the hook to one repository's events; 0 is every
	// repository. Repo is its name, filled in on reads.
	RepoID int64
	Repo   string
	// Branch, when not empty, is a glob the build's branch must match
	// (for a deployment, its release's branch).
	Branch string
	// Environment, when not empty, is a glob the environment of a
	// deployment (or of a deployment's build) must match: such a hook
	// gets no events of other builds.
	Environment string
	Format      string // HookJSON or HookSlack
	CreatedAt   time.Time
}

// Outbox is the part of the Store that holds what the server owes to
// forges and hooks, and the hooks themselves. Every method is safe for
// concurrent use, also by several servers on one database.
type Outbox interface {
	// EnqueueDeliveries stores ds in one transaction and sets the ID and
	// CreatedAt of each it stored. A delivery whose DedupeKey is stored
	// already is left out, and its ID set to 0. A stored delivery with a
	// CoalesceKey supersedes the pending ones with the same key. An empty
	// State is stored as pending, a zero NextAttemptAt as now; a delivery
	// stored in a final state gets FinishedAt now.
	EnqueueDeliveries(ctx context.Context, ds []*Delivery) error
	// ClaimDeliveries claims up to limit due deliveries for claimer (a
	// server's name), oldest due first: pending ones whose NextAttemptAt
	// has come, and sending ones whose lease expired (their server died).
	// Each becomes sending by claimer with a new LeaseToken, Attempts one
	// higher and LeaseExpires = now + ttl.
	//
	// One host gets one delivery at a time: a delivery to a host another
	// one is being sent to (under a live lease) waits, as do deliveries
	// to a held host (HoldDeliveries). Of deliveries with one CoalesceKey,
	// one that a newer one follows is superseded rather than claimed. No
	// delivery is claimed by two callers at once, on any server. It never
	// waits for another caller's claim.
	ClaimDeliveries(ctx context.Context, claimer string, limit int, ttl time.Duration) ([]*Delivery, error)
	// ReleaseDeliveries makes the deliveries claimer is sending pending
	// and due at once, and returns how many: a server that starts takes
	// back what it was sending when it died, rather than waiting for the
	// leases to run out.
	ReleaseDeliveries(ctx context.Context, claimer string) (int, error)
	// FinishDelivery records the outcome of a claimed delivery: d.State
	// (delivered, failed, or pending with d.NextAttemptAt for a retry),
	// d.LastStatus and d.LastError. A retry of a delivery that a newer one
	// with its CoalesceKey follows is recorded as superseded instead, and
	// d.State set so. ErrStaleLease when d is no longer sending under
	// d.LeaseToken; then nothing is written.
	FinishDelivery(ctx context.Context, d *Delivery) error
	// HoldDeliveries keeps deliveries to host from being claimed until
	// until (a forge's rate limit). A later hold of the same host that
	// ends sooner does not shorten it.
	HoldDeliveries(ctx context.Context, host string, until time.Time) error
	// Deliveries returns the deliveries that match f, newest first.
	Deliveries(ctx context.Context, f DeliveryFilter) ([]*Delivery, error)
	// PruneDeliveries removes final deliveries that finished before
	// before, and returns how many.
	PruneDeliveries(ctx context.Context, before time.Time) (int, error)

	// CreateHook stores h and sets h.ID, h.CreatedAt and h.Repo.
	// ErrNotFound when h.RepoID names no repo.
	CreateHook(ctx context.Context, h *Hook) error
	// Hook returns a hook with its secret, or ErrNotFound.
	Hook(ctx context.Context, id int64) (*Hook, error)
	// Hooks returns every hook with its secret, oldest first.
	Hooks(ctx context.Context) ([]*Hook, error)
	// DeleteHook removes a hook; its deliveries that were not sent yet
	// fail with the reason "hook removed". ErrNotFound when there is no
	// such hook. Removing a repo removes its hooks.
	DeleteHook(ctx context.Context, id int64) error

	// SetForgeDeployment records the forge's ID of deployment id (GitHub's
	// deployment, made with its first status), which its later statuses
	// name. A second call for the same deployment keeps the first ID and
	// returns ErrConflict; ErrNotFound when there is no such deployment.
	SetForgeDeployment(ctx context.Context, id, forgeID int64) error
	// ForgeDeployment returns the forge's ID of deployment id, or
	// ErrNotFound when none was recorded.
	ForgeDeployment(ctx context.Context, id int64) (int64, error)

	// LatestBuild returns the newest build of repo on branch whose status
	// is one of statuses, among the builds with an ID below before (0:
	// all), without jobs. ErrNotFound when there is none.
	LatestBuild(ctx context.Context, repo, branch string, before int64, statuses ...string) (*Build, error)
}
