//go:build linux

package session

import (
	"os"
	"strings"
)

// bootID returns the kernel's random boot id, which changes at every boot.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
