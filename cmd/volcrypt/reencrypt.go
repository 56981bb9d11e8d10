package main

import "github.com/spf13/cobra"

// reencryptCommands returns the commands for encrypt, decrypt, reencrypt (issue 8).
func (a *app) reencryptCommands() []*cobra.Command { return nil }
