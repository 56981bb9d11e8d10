package main

import (
	"os"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
)

// TestEveryCommandHasExamples keeps `volcrypt CMD --help` useful: every
// visible command shows at least one example.
func TestEveryCommandHasExamples(t *testing.T) {
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	var walk func(c *cobra.Command)
	var missing []string
	walk = func(c *cobra.Command) {
		if !c.Hidden && c.Example == "" {
			missing = append(missing, c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(a.rootCommand())
	require.Empty(t, missing, "commands without Example")
}
