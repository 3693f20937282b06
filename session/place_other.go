//go:build !unix

package session

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
)

// placeFile makes the file src appear at rel inside the root r, complete
// or not at all: it copies src to tmpName next to the destination through
// r, fsyncs it, and links (without overwrite) or renames (with) it into
// place.
func placeFile(r *os.Root, rel string, src *os.File, tmpName string, overwrite bool, sy *syncer) error {
	tmp := path.Join(path.Dir(rel), tmpName)
	_ = r.Remove(tmp)
	in := io.NewSectionReader(src, 0, 1<<62)
	out, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return destinationError(fmt.Errorf("creating temporary file next to the destination: %w", err))
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = sy.fsync(out)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if overwrite {
			err = r.Rename(tmp, rel)
		} else {
			err = r.Link(tmp, rel)
			_ = r.Remove(tmp)
			if errors.Is(err, fs.ErrExist) {
				return ErrDestinationExists
			}
		}
	}
	if err != nil {
		_ = r.Remove(tmp)
		return destinationError(fmt.Errorf("moving upload into place: %w", err))
	}
	return nil
}
