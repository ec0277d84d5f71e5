package sqlite

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-ci/gantry/internal/store"
)

// The unfinished builds of a branch come from the partial index made for
// them, not from a walk of the branch's history: SQLite takes a partial
// index only when the query's terms match its WHERE.
func TestUnfinishedBuildsUseTheirIndex(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q, args := buildsQuery(store.BuildFilter{Repo: "acme/app", Branch: "main", Unfinished: true, Limit: 1000})
	rows, err := s.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan, "; "); !strings.Contains(got, "USING INDEX builds_unfinished") {
		t.Errorf("query plan of the unfinished builds of a branch: %s; want it to use builds_unfinished", got)
	}
}
