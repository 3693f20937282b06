package session

import (
	"context"
	"errors"
	"io"
	"time"
)

// SettleOptions say how a complete upload is finished.
type SettleOptions struct {
	// Notify, when set, hands the complete upload to a server
	// application and returns the outcome: whether to place the upload
	// too, and what the final Ack carries. Its error is returned by
	// Settle as it is, and the next Settle notifies again. Without
	// Notify, the upload is placed at its destination.
	Notify func(ctx context.Context, d *Delivery) (FinalInfo, error)
	// Overwrite allows placing the upload over an existing file.
	Overwrite bool
	// Decided, when set, is called once the outcome is recorded and
	// before the upload is placed, with the session's state; its error
	// stops Settle, and the next Settle calls it again. Shared sessions
	// publish the outcome there, so that a node that adopts the session
	// never notifies the application a second time.
	Decided func(st State) error
}

// Settlement is what Settle did.
type Settlement struct {
	// Final is what the final Ack carries.
	Final FinalInfo
	// Cached is set when the session was settled before, and nothing was
	// done this time.
	Cached bool
	// Notified is set when this call delivered the upload.
	Notified bool
	// Placed is set when this call placed the upload, and PlaceTime says
	// how long that took.
	Placed    bool
	PlaceTime time.Duration
	// DiscardError is the failure to delete the held bytes of a
	// delivered upload, which settles the session all the same.
	DiscardError error
}

// Settle finishes a complete upload, once. In this order, each step
// recorded before the next begins:
//
//  1. notify: the server application gets the upload, through
//     opts.Notify, and its outcome is recorded durably together with a
//     checkpoint of the upload, so that an application that answered is
//     never asked again, not even after a power loss;
//  2. place: the upload appears at its destination, when there is no
//     notification or the application asked for it;
//  3. finish: the final Ack is cached, so that a repeated final fragment
//     gets the same answer without any of the work;
//  4. discard: a delivered upload's bytes are deleted (its reply stays
//     until the session ends).
//
// A retried final fragment, or one after a restart, redoes only what did
// not succeed: a placement refused because the destination exists never
// causes a second notification.
func (l *Lease) Settle(ctx context.Context, opts SettleOptions) (Settlement, error) {
	s := l.s
	if info, ok := s.Finished(); ok {
		return Settlement{Final: info, Cached: true}, nil
	}
	if !s.State().Complete() {
		return Settlement{}, ErrIncomplete
	}
	var out Settlement
	info, decided := s.final()
	if !decided {
		if opts.Notify == nil {
			info = FinalInfo{Commit: true}
		} else {
			var err error
			if info, err = opts.Notify(ctx, &Delivery{l: l}); err != nil {
				return out, err
			}
			if err := s.setFinal(info); err != nil {
				return out, err
			}
			out.Notified = true
		}
	}
	out.Final = info
	if opts.Decided != nil {
		if err := opts.Decided(s.State()); err != nil {
			return out, err
		}
	}
	if s.placedStraight > 0 {
		out.Placed, out.PlaceTime = true, s.placedStraight
		s.placedStraight = 0
	}
	if info.Commit && !s.State().Committed {
		start := time.Now()
		if err := s.place(ctx, opts.Overwrite); err != nil {
			return out, err
		}
		out.Placed, out.PlaceTime = true, time.Since(start)
	}
	s.update(func(st *State) {
		st.Finished = true
		st.Final = &info
	})
	if opts.Notify != nil {
		out.DiscardError = s.discardData()
	}
	return out, nil
}

// final returns the recorded outcome of finishing the session, if any.
func (s *Session) final() (FinalInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Final == nil {
		return FinalInfo{}, false
	}
	return *s.st.Final, true
}

// setFinal durably records how the session is to be finished, with a
// durable checkpoint of the whole upload, before that work is done.
func (s *Session) setFinal(info FinalInfo) error {
	s.update(func(st *State) { st.Final = &info })
	if s.State().DataDiscarded {
		return s.persist(true)
	}
	return s.checkpointNow()
}

// place places the complete upload at its destination and records that.
// A session whose state is on disk records it at once; one that holds
// its state nowhere yet records it in the journal before placing, so that
// a restart finds the session and recognises its upload at the
// destination.
func (s *Session) place(ctx context.Context, overwrite bool) error {
	st := s.State()
	if st.DataDiscarded {
		return errors.New("placing a session whose data was discarded")
	}
	data, err := s.openData()
	if err != nil {
		return err
	}
	s.persistMu.Lock()
	kept := s.stateFile || s.inJournal
	s.persistMu.Unlock()
	if !kept {
		if err := s.journalState(); err != nil {
			return err
		}
	}
	s.waitCheckpoint()
	if err := data.Place(ctx, st.Destination(), overwrite); err != nil {
		return err
	}
	s.update(func(st *State) { st.Committed = true })
	return nil
}

// discardData deletes the bytes of a finished, delivered session to free
// their space early; the session still reports every byte received. The
// state says so durably first: a state that still expects the bytes,
// after they are gone, would make recovery reopen a delivered upload.
func (s *Session) discardData() error {
	st := s.State()
	if st.DataDiscarded {
		return nil
	}
	s.waitCheckpoint()
	s.update(func(st *State) { st.DataDiscarded = true })
	if err := s.persist(true); err != nil {
		return err
	}
	data, err := s.openData()
	if err != nil {
		return err
	}
	return data.Remove()
}

// Delivery is a complete upload being handed to a server application by
// [SettleOptions.Notify], with the session's reply storage.
type Delivery struct {
	l *Lease
}

// State returns the session's state.
func (d *Delivery) State() State { return d.l.s.State() }

// Digest returns the SHA-256 of the upload, computing it from the held
// bytes if it was not computed while they were written.
func (d *Delivery) Digest() ([]byte, error) {
	s := d.l.s
	st := s.State()
	if len(st.Digest) > 0 {
		return st.Digest, nil
	}
	sum, err := s.computeDigest(st.Total)
	if err != nil {
		return nil, err
	}
	return sum, s.save()
}

// Open returns a reader of the whole upload, for a notification by value.
// It fails when the storage cannot read the bytes back ([DataReader]).
func (d *Delivery) Open() (io.ReadCloser, error) {
	data, err := d.l.s.openData()
	if err != nil {
		return nil, err
	}
	dr, ok := data.(DataReader)
	if !ok {
		return nil, errors.New("the upload's storage cannot read it back for a notification by value")
	}
	return dr.NewReader(0)
}

// Path returns the local file that holds the upload, for a notification
// by reference, and false when the storage keeps it elsewhere
// ([DataFile]).
func (d *Delivery) Path() (string, bool) {
	data, err := d.l.s.openData()
	if err != nil {
		return "", false
	}
	df, ok := data.(DataFile)
	if !ok {
		return "", false
	}
	return df.Path(), true
}

// Data returns the session's Data, for a storage-specific notification
// by reference (an object store names the upload by its location). The
// caller must not append to it.
func (d *Delivery) Data() (Data, error) { return d.l.s.openData() }

// ReplyPath returns where the application may write a reply by
// reference.
func (d *Delivery) ReplyPath() string { return d.l.s.ReplyPath() }

// StoreReply stores r as the session's reply, durably; see
// [Session.storeReply].
func (d *Delivery) StoreReply(r io.Reader, max int64) (int64, error) {
	return d.l.s.storeReply(r, max)
}

// AdoptReply takes the file the application wrote at ReplyPath as the
// reply; see [Session.adoptReply].
func (d *Delivery) AdoptReply(max int64) (int64, error) { return d.l.s.adoptReply(max) }

// DiscardReply deletes a stored reply, if any.
func (d *Delivery) DiscardReply() error { return d.l.s.discardReply() }
