//go:build !linux

package session

import (
	"context"
	"io"
)

// Stage implements [StreamPlacer]; this platform has no unnamed temporary
// files, so every upload is held in its session.
func (ls *LocalStorage) Stage(context.Context, Destination, io.Reader, int64) (Staged, error) {
	return nil, ErrNotStaged
}
