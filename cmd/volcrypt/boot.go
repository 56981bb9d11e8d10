package main

import "github.com/spf13/cobra"

// bootCommands returns the commands for attach-all, man pages and other boot/ecosystem commands (issue 7).
func (a *app) bootCommands() []*cobra.Command { return nil }
