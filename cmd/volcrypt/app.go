package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/volcrypt/volcrypt/internal/passphrase"
	"github.com/volcrypt/volcrypt/internal/progress"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/kdf"
	"github.com/volcrypt/volcrypt/volume"
)

// app holds what every command shares: global flags and standard streams.
type app struct {
	batch  bool
	debug  bool
	json   bool
	stdin  *os.File
	stdout io.Writer
	stderr io.Writer
	prompt *passphrase.Prompter
	log    *slog.Logger
	// unlockLimits caps the KDF cost accepted from a header (limitFlags);
	// zero means kdf.DefaultLimits.
	unlockLimits kdf.Limits
	// progressJSON is --progress-json on commands with addProgressFlag.
	progressJSON bool
}

func run(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	hardenProcess()
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	a.prompt = &passphrase.Prompter{In: stdin, Out: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return 0
	}
	code, hint := exitCode(err)
	fmt.Fprintf(stderr, "error: %s\n", oneLine(err))
	if hint != "" {
		fmt.Fprintf(stderr, "hint: %s\n", hint)
	}
	return code
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "volcrypt",
		Short: "Encrypt block devices and image files with LUKS2",
		Long: `volcrypt encrypts block devices and image files in the LUKS2 format, byte-compatible
with cryptsetup, and unlocks them with a passphrase, a key file, a recovery password or a TPM 2.0.`,
		Example: `  volcrypt format disk.img && volcrypt enroll recovery disk.img
  volcrypt open disk.img data && mkfs.ext4 /dev/mapper/data && volcrypt close data
  volcrypt enroll tpm2 --tpm2-pcrs 7 /dev/sda3 && volcrypt attach-all`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			level := slog.LevelWarn
			if a.debug {
				level = slog.LevelDebug
			}
			a.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
		},
	}
	root.PersistentFlags().BoolVarP(&a.batch, "batch-mode", "q", false, "do not ask for confirmation")
	root.PersistentFlags().BoolVar(&a.debug, "debug", false, "show debug messages")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.formatCommand(), a.openCommand(), a.dumpCommand(), a.keyCommand())
	root.AddCommand(a.closeCommand(), a.statusCommand(), a.enrollCommand(), a.tokenCommand())
	for _, cmds := range [][]*cobra.Command{a.benchmarkCommands(), a.reliabilityCommands(), a.bootCommands(), a.reencryptCommands(), a.tpm2Commands()} {
		root.AddCommand(cmds...)
	}
	return root
}

// usageError marks wrong command-line parameters (exit code 1).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// keyFlags are the flags that name where an existing key comes from.
type keyFlags struct {
	file   string
	offset int64
	size   int64
	slot   int
}

func (k *keyFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&k.file, "key-file", "d", "", "read the key from this file (- for standard input)")
	fs.Int64Var(&k.offset, "keyfile-offset", 0, "skip this many bytes of the key file")
	fs.Int64VarP(&k.size, "keyfile-size", "l", 0, "read at most this many bytes of the key file")
	fs.IntVarP(&k.slot, "key-slot", "S", -1, "key slot to use")
}

// passphrase returns the key from the key file or asks for it.
func (a *app) passphrase(k keyFlags, prompt string, confirm bool) (*secret.Buffer, error) {
	if k.file != "" {
		b, err := passphrase.KeyFile{Path: k.file, Offset: k.offset, Size: k.size}.Read(a.stdin)
		if err != nil {
			return nil, err
		}
		return secret.From(b), nil
	}
	b, err := a.prompt.Ask(prompt, confirm)
	if err != nil {
		return nil, err
	}
	if b, err = normalizeRecovery(b); err != nil {
		return nil, err
	}
	return secret.From(b), nil
}

// kdfFlags are the flags that choose a new key slot's KDF.
type kdfFlags struct {
	pbkdf      string
	hash       string
	iterTime   uint32
	memory     uint32
	parallel   uint32
	forceIters uint32
}

func (f *kdfFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.pbkdf, "pbkdf", kdf.Argon2id, "key derivation for the key slot: argon2id, argon2i or pbkdf2")
	fs.StringVar(&f.hash, "hash", "sha256", "hash for PBKDF2, the anti-forensic splitter and the digest")
	fs.Uint32VarP(&f.iterTime, "iter-time", "i", kdf.DefaultTargetMs, "milliseconds the key derivation should take")
	fs.Uint32Var(&f.memory, "pbkdf-memory", 0, "Argon2 memory in KiB (a cap when calibrating; default 1048576)")
	fs.Uint32Var(&f.parallel, "pbkdf-parallel", 0, "Argon2 threads (default min(4, CPUs))")
	fs.Uint32Var(&f.forceIters, "pbkdf-force-iterations", 0, "PBKDF2 iterations or Argon2 time cost, skipping calibration")
}

// addProgressFlag registers --progress-json (a.progressJSON).
func (a *app) addProgressFlag(cmd *cobra.Command) {
	progress.AddFlag(cmd.Flags(), &a.progressJSON)
}

// progress reports a command's long operations: bars on a terminal, JSON
// lines with --progress-json.
func (a *app) progress() *progress.Reporter {
	return progress.New(a.stderr, a.progressJSON)
}

// calibrated returns k with the KDF cost fixed for a keyLen-byte key. When
// k asks for calibration (about 2 s by default) it runs here under a
// "calibrate" spinner, so that the volume call does not calibrate again.
func (a *app) calibrated(ctx context.Context, k volume.KDFOptions, keyLen int) (volume.KDFOptions, error) {
	if k.ForceIterations > 0 {
		return k, nil
	}
	task := a.progress().Start("calibrate", k.Algorithm, -1)
	p, err := k.Resolve(ctx, keyLen)
	task.Done(err)
	if err != nil {
		return k, err
	}
	k.Algorithm, k.ForceIterations, k.MemoryKiB, k.Parallel = p.Algorithm, p.Time, p.MemoryKiB, p.Threads
	if p.Hash != "" {
		k.Hash = p.Hash
	}
	return k, nil
}

func (f kdfFlags) options() volume.KDFOptions {
	return volume.KDFOptions{Algorithm: f.pbkdf, Hash: f.hash, IterTimeMs: f.iterTime,
		MemoryKiB: f.memory, Parallel: f.parallel, ForceIterations: f.forceIters}
}

// confirm asks a yes/no question unless in batch mode; without a terminal
// it refuses, so that scripts must pass -q.
func (a *app) confirm(question string) error {
	if a.batch {
		return nil
	}
	if !a.prompt.IsTerminal() {
		return usageError{fmt.Errorf("%s: confirmation needed; run with -q/--batch-mode to confirm without a terminal", question)}
	}
	fmt.Fprintf(a.stderr, "WARNING!\n========\n%s\n\nAre you sure? (Type 'yes' in capital letters): ", question)
	line, _ := bufio.NewReader(a.stdin).ReadString('\n')
	if strings.TrimSpace(line) != "YES" {
		return usageError{fmt.Errorf("operation aborted")}
	}
	return nil
}

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) load(device, headerFile string, readOnly bool) (*volume.Volume, error) {
	return volume.Load(device, volume.LoadOptions{HeaderFile: headerFile, ReadOnly: readOnly, Logger: a.log})
}
