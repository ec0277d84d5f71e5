package store

import "time"

// Secret is a repository's secret as stored: its value only ever as
// ciphertext. The store neither encrypts nor decrypts; package secret does,
// and binds each ciphertext to the secret's repo, name and environment, so
// a ciphertext copied to another row does not decrypt.
type Secret struct {
	ID     int64
	RepoID int64
	// Repo is the repository's name: SetSecret finds the repo by it, and
	// reads fill it in.
	Repo string
	// Name is the environment variable a job receives the value as.
	Name string
	// Environment scopes the secret to one deployment environment; empty
	// means unscoped, the only secrets build jobs receive.
	Environment string
	// KeyID names the key Ciphertext is encrypted under.
	KeyID      string
	Ciphertext []byte
	CreatedAt  time.Time
	// UpdatedAt is when the value was last set; re-encrypting it under
	// another key (RekeySecret) does not change it.
	UpdatedAt time.Time
}
