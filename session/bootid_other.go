//go:build !linux

package session

// bootID returns "" where no boot id is available; every restart is then
// treated as a process crash.
func bootID() string { return "" }
