package api

import "fmt"

// actor names an identity in the audit log, and is the one place that
// does: the user's name, or "token:NAME#ID" for a token of no user.
func actor(id *identity) string {
	switch {
	case id == nil:
		return "anonymous"
	case id.Token.UserID != 0:
		return id.User
	}
	return fmt.Sprintf("token:%s#%d", id.Token.Name, id.Token.ID)
}
