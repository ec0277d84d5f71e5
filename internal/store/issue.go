package store

import "context"

// IssueLinks records which builds name which issue keys (ABC-123, #123),
// so a user can ask which builds contain a change; the releases that
// ship one are recorded with the release (Release.Issues). Every method is safe
// for concurrent use.
type IssueLinks interface {
	// LinkIssues records that a build names keys; a key it names already
	// is left as it is. ErrNotFound when there is no such build.
	LinkIssues(ctx context.Context, buildID int64, keys []string) error
	// IssueBuilds returns the builds that name key, newest first, at most
	// limit (0 means 50), with their jobs but without steps or pipeline.
	IssueBuilds(ctx context.Context, key string, limit int) ([]*Build, error)
	// BuildIssues returns the keys a build names, in order.
	BuildIssues(ctx context.Context, buildID int64) ([]string, error)

	// IssueReleases returns the releases that ship key (CreateRelease
	// records a release's Issues), newest first, at most limit (0 means
	// 50), with their artifacts and issues.
	IssueReleases(ctx context.Context, key string, limit int) ([]*Release, error)
}
