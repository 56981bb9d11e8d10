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

// errEscrow marks a failed escrow command.
var errEscrow = errors.New("escrow command failed")

// escrowCommand returns a volume.Escrow that hands the recovery password
// (and the key slot it will open) to command, run by sh -c, as JSON on its
// standard input; the escrow succeeds if the command exits 0. It runs while
// the volume is locked and before the key slot is written, so a failure,
// an interrupt (SIGINT, SIGTERM, which stop the command) or volcrypt being
// killed leaves the volume without the slot. The command's standard output
// goes to our standard error, so that ours stays the password (or the
// JSON result).
func (a *app) escrowCommand(ctx context.Context, v *volume.Volume, command string) volume.Escrow {
	return func(pw []byte, slot int) error {
		host, _ := os.Hostname()
		rec := escrowRecord{Device: v.Path, UUID: v.Header.UUID, Label: v.Header.Label, Keyslot: slot,
			RecoveryPassword: string(pw), Hostname: host, Created: time.Now().UTC().Format(time.RFC3339)}
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
		err = cmd.Run()
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("%w (%v)", errEscrow, err)
		}
		return nil
	}
}
