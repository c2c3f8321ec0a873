package main

// How imalog runs a verification: flags give the list, the evidence and
// the options; package verdict judges; this file opens the files, reads
// and writes the checkpoint, and names the option of a bad input.
//
// Incremental verification (--checkpoint FILE): when FILE exists the run
// starts from it and reads only the list's entries after it; either way
// FILE is rewritten (atomically) with where this run stopped. A list
// whose consumed part changed is refused (reason checkpoint_mismatch) and
// the checkpoint is left alone: a machine that rebooted starts a new
// list, and its checkpoint must be removed.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/verdict"
)

// cpOptions are a run's checkpoint options.
type cpOptions struct {
	path  string // "": no checkpoint
	check string // tail (default) or full
}

// listRun is one verification as the flags (or a manifest) give it.
type listRun struct {
	name     string // the list FILE
	eventLog string // --event-log FILE ("": none)
	order    binary.ByteOrder
	kexec    bool
	ev       verdict.Evidence
	opt      verdict.Options
	cp       cpOptions
}

// run opens the list (and the checkpoint), verifies through package
// verdict and writes the next checkpoint; err is bad input (exit 2),
// naming the option whose file it is.
func (r listRun) run(stdin io.Reader) (*Verdict, error) {
	opt := r.opt
	if r.eventLog != "" {
		b, err := readSmall(r.eventLog, stdin, maxEventLog)
		if err != nil {
			return nil, fmt.Errorf("--event-log: %w", err)
		}
		r.ev.EventLog = b
	}
	if r.cp.path != "" {
		if r.cp.path == "-" {
			return nil, usagef("--checkpoint: a file, not standard input")
		}
		opt.WantCheckpoint, opt.CheckpointFull = true, r.cp.check == "full"
		cpIn := stdin
		if _, fleet := stdin.(*confined); !fleet {
			cpIn = nil // the checkpoint is a file, never standard input
		}
		b, err := readSmall(r.cp.path, cpIn, ima.MaxCheckpoint)
		switch {
		case err == nil:
			opt.Checkpoint = b
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("--checkpoint: %w", err)
		}
	}
	in, rd, finish, err := listInput(r.name, stdin, r.order, r.kexec)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	if _, fleet := stdin.(*confined); fleet && in.size > maxInput {
		return nil, fmt.Errorf("%s: %d bytes, a machine's list is at most %d", r.name, in.size, int64(maxInput))
	}
	list := verdict.List{R: rd, Order: r.order, Check: finish}
	if in.ra != nil {
		list.RA, list.Size = in.ra, in.raSize
	} else if r.cp.path != "" {
		return nil, usagef("%s: --checkpoint needs a regular file (read at offsets)", escapeText(r.name))
	}
	v, next, err := verdict.Verify(list, r.ev, opt)
	if err != nil {
		var ie *verdict.InputError
		if errors.As(err, &ie) {
			switch ie.Part {
			case "list":
				return nil, fmt.Errorf("%s: %w", r.name, ie.Err)
			case "checkpoint":
				return nil, fmt.Errorf("--checkpoint %s: %w", r.cp.path, ie.Err)
			case "event log":
				return nil, fmt.Errorf("--event-log %s: %w", r.eventLog, ie.Err)
			case "quote", "signature", "ak":
				flag := map[string]string{"quote": "--quote", "signature": "--sig", "ak": "--ak"}[ie.Part]
				return nil, fmt.Errorf("%s: %w", flag, ie.Err)
			}
		}
		return nil, err
	}
	v.SetNames(r.name, "")
	if v.Checkpoint != nil {
		v.Checkpoint.File = r.cp.path
		if next != nil {
			if err := writeAtomic(r.cp.path, next); err != nil {
				return nil, fmt.Errorf("--checkpoint: %w", err)
			}
			v.Checkpoint.Written = true
		}
	}
	return v, nil
}

// writeAtomic replaces path with b through a temporary file in its
// directory.
func writeAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".checkpoint-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

func printCheckpoint(w io.Writer, cv *CheckpointVerdict) {
	if cv == nil {
		return
	}
	file := escapeText(cv.File)
	switch {
	case cv.Resumed:
		fmt.Fprintf(w, "checkpoint %s: resumed after %d entries, read %d new\n", file, cv.From, cv.Read)
	case cv.Restart != "":
		fmt.Fprintf(w, "checkpoint %s: full run (%s), read %d entries\n", file, escapeText(cv.Restart), cv.Read)
	default:
		fmt.Fprintf(w, "checkpoint %s: none yet, read %d entries\n", file, cv.Read)
	}
	if cv.Written {
		fmt.Fprintf(w, "checkpoint %s: written\n", file)
	}
	if cv.NotWritten != "" {
		fmt.Fprintf(w, "checkpoint %s: not written: %s\n", file, escapeText(cv.NotWritten))
	}
}
