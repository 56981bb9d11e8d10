package main

import "github.com/spf13/cobra"

// benchmarkCommands returns the commands for volcrypt benchmark (issue 6).
func (a *app) benchmarkCommands() []*cobra.Command { return nil }
