//go:build unix

package session

import "syscall"

var errQuota error = syscall.EDQUOT
