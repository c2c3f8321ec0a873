package main

// imalog verify LIST (--pcrs ... | --quote ...) --checkpoint FILE [--checkpoint-check tail|full]
//
// Incremental verification (ima.VerifyFrom): when FILE exists the run
// starts from it and reads only the list's entries after it; either way
// FILE is rewritten (atomically) with where this run stopped. The verdict
// is the one a full run gives; docs/verdict-schema.md and the ima package
// (checkpoint.go) describe the checkpoint and what a resumed run cannot
// see. A list whose consumed part changed is refused (reason
// checkpoint_mismatch) and the checkpoint is left alone: a machine that
// rebooted starts a new list, and its checkpoint must be removed.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gokexec/gokexec/ima"
)

// cpOptions are a run's checkpoint options.
type cpOptions struct {
	path  string // "": no checkpoint
	check string // tail (default) or full
}

// verifyListCP verifies FILE, from and into a checkpoint when cpo.path is
// set. mismatch reports a checkpoint that does not fit the list.
func verifyListCP(name string, stdin io.Reader, order binary.ByteOrder, kexec bool, quoted ima.PCRValues, opt ima.VerifyOptions, cpo cpOptions) (ima.VerifyResult, *CheckpointVerdict, error) {
	if cpo.path == "" {
		res, err := verifyListFile(name, stdin, order, kexec, quoted, opt)
		return res, nil, err
	}
	cv := &CheckpointVerdict{File: cpo.path}
	var cp *ima.Checkpoint
	cpIn := stdin
	if _, fleet := stdin.(*confined); !fleet {
		cpIn = nil // the checkpoint is a file, never standard input
	}
	if b, err := readSmall(cpo.path, cpIn, ima.MaxCheckpoint); err == nil {
		if cp, err = ima.ParseCheckpoint(b); errors.Is(err, ima.ErrCheckpointVersion) {
			cv.Restart = "the checkpoint is of an earlier version"
		} else if err != nil {
			return ima.VerifyResult{}, cv, fmt.Errorf("%s: %w", cpo.path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return ima.VerifyResult{}, cv, fmt.Errorf("--checkpoint: %w", err)
	}
	in, _, finish, err := listInput(name, stdin, order, kexec)
	if err != nil {
		return ima.VerifyResult{}, cv, err
	}
	defer in.Close()
	if in.ra == nil {
		return ima.VerifyResult{}, cv, usagef("%s: --checkpoint needs a regular file (read at offsets)", name)
	}
	if cp != nil && cpo.check == "full" {
		if err := ima.CheckConsumed(in.ra, in.raSize, cp); err != nil {
			return ima.VerifyResult{}, cv, fmt.Errorf("%s: %w", name, err)
		}
	}
	res, info, err := ima.VerifyFrom(in.ra, in.raSize, order, cp, quoted, opt)
	if err == nil {
		err = finish(res.Entries)
	}
	if err != nil {
		return res, cv, fmt.Errorf("%s: %w", name, err)
	}
	cv.Resumed, cv.From, cv.Read = cp != nil && info.Restart == "", info.From, info.Read
	if info.Restart != "" {
		cv.Restart = info.Restart
	}
	if info.Next == nil {
		cv.Restart += " (no checkpoint written: a method per boot was needed)"
		return res, cv, nil
	}
	b, err := ima.MarshalCheckpoint(info.Next)
	if err != nil {
		return res, cv, err
	}
	if err := writeAtomic(cpo.path, b); err != nil {
		return res, cv, err
	}
	cv.Written = true
	return res, cv, nil
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

// checkpointRefused makes a refusal verdict of a checkpoint that does not
// fit the list; ok is false for other errors.
func checkpointRefused(v *Verdict, err error) bool {
	if !errors.Is(err, ima.ErrCheckpointMismatch) {
		return false
	}
	v.Consistent, v.Exit, v.Reason, v.Error = false, exitMismatch, ReasonCheckpointBroken, err.Error()
	return true
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
		fmt.Fprintf(w, "checkpoint %s: full run (%s), read %d entries\n", file, cv.Restart, cv.Read)
	default:
		fmt.Fprintf(w, "checkpoint %s: none yet, read %d entries\n", file, cv.Read)
	}
	if cv.Written {
		fmt.Fprintf(w, "checkpoint %s: written\n", file)
	}
}
