package store

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoadMigrations(t *testing.T) {
	ok := fstest.MapFS{
		"m/0002_more.sql": {Data: []byte("two")},
		"m/0001_init.sql": {Data: []byte("one")},
	}
	ms, err := LoadMigrations(ok, "m/*.sql")
	if err != nil || len(ms) != 2 || ms[0].Name != "0001_init.sql" || ms[1].SQL != "two" || ms[1].Version != 2 {
		t.Fatalf("LoadMigrations = %+v, %v; want 0001_init.sql then 0002_more.sql", ms, err)
	}
	for _, tt := range []struct {
		files map[string]string
		want  string
	}{
		{map[string]string{"m/0001_a.sql": "", "m/0003_c.sql": ""}, "migration 0003_c.sql: want version 2"},
		{map[string]string{"m/init.sql": ""}, "migration init.sql: name must be NNNN_what.sql"},
		{map[string]string{"m/0000_zero.sql": ""}, "migration 0000_zero.sql: name must be NNNN_what.sql"},
	} {
		fsys := fstest.MapFS{}
		for name, data := range tt.files {
			fsys[name] = &fstest.MapFile{Data: []byte(data)}
		}
		if _, err := LoadMigrations(fsys, "m/*.sql"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LoadMigrations(%v) = %v, want %q", tt.files, err, tt.want)
		}
	}
}
