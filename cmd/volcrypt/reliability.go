package main

import "github.com/spf13/cobra"

// reliabilityCommands returns the commands for header backup/restore, repair, erase (issue 5).
func (a *app) reliabilityCommands() []*cobra.Command { return nil }
