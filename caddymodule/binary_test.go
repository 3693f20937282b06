package caddymodule_test

import (
	"fmt"
	"strings"
)

// siteCaddyfile returns a Caddyfile for a process: admin on adminPort, one
// site on 127.0.0.1:port with a bits_upload handler.
func siteCaddyfile(adminPort, port int, root, sessionDir, options string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
}
:%d {
	bind 127.0.0.1
	bits_upload {
		root %s
		session_dir %s
		%s
	}
}
`, adminPort, port, root, sessionDir, strings.TrimSpace(options))
}
