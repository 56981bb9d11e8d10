// Command volcrypt encrypts block devices and image files with LUKS2 and
// unlocks them with a passphrase, a key file, a recovery password or a TPM.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
