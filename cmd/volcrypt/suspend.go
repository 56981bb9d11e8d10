package main

import "github.com/spf13/cobra"

// tpm2Commands returns the tpm2 suspend/resume commands.
func (a *app) tpm2Commands() []*cobra.Command { return nil }
