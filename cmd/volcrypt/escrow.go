package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/volume"
)

// escrowRecord is what --escrow-command reads on its standard input: one
// JSON object, then end of file.
type escrowRecord struct {
	Device           string `json:"device"`
	UUID             string `json:"uuid"`
	Label            string `json:"label,omitempty"`
	Keyslot          int    `json:"keyslot"`
	RecoveryPassword string `json:"recovery_password"`
	Hostname         string `json:"hostname,omitempty"`
	Created          string `json:"created"`
}

// errEscrow marks a failed escrow command; the recovery key slot is gone.
var errEscrow = errors.New("escrow command failed")

// escrow hands the recovery password in slot to command (run by sh -c) as
// JSON on its standard input. Unless the command exits 0, the key slot and
// its token are removed again, so no recovery password exists that nobody
// stored; an interrupt (SIGINT, SIGTERM) while it runs counts as a failure.
// The command's standard output goes to our standard error, so that ours
// stays the password (or the JSON result).
func (a *app) escrow(ctx context.Context, v *volume.Volume, command string, pw *secret.Buffer, slot int) error {
	host, _ := os.Hostname()
	rec := escrowRecord{Device: v.Path, UUID: v.Header.UUID, Label: v.Header.Label, Keyslot: slot,
		RecoveryPassword: string(pw.Bytes()), Hostname: host, Created: time.Now().UTC().Format(time.RFC3339)}
	in, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	defer secret.Wipe(in)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Stdin = bytes.NewReader(append(in, '\n'))
	cmd.Stdout, cmd.Stderr = a.stderr, a.stderr
	runErr := cmd.Run()
	if runErr == nil && ctx.Err() == nil {
		return nil
	}
	if runErr == nil {
		runErr = ctx.Err()
	}
	runErr = fmt.Errorf("%w (%v)", errEscrow, runErr)
	if err := removeRecovery(v, slot); err != nil {
		return fmt.Errorf("%w; the recovery password in key slot %d could NOT be removed: %w", runErr, slot, err)
	}
	return fmt.Errorf("%w: recovery key slot %d removed again; the volume is as before", runErr, slot)
}

// removeRecovery removes a recovery key slot and the tokens left with no
// key slot by that.
func removeRecovery(v *volume.Volume, slot int) error {
	if err := v.RemoveKey(slot, true); err != nil {
		return err
	}
	for _, t := range v.Header.Tokens() {
		if t.Type == volume.TokenRecovery && len(t.Keyslots) == 0 {
			if err := v.RemoveToken(t.ID); err != nil {
				return err
			}
		}
	}
	return nil
}
