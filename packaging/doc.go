// Package packaging holds what the Debian package installs besides the
// binary (systemd units, the initramfs-tools hook and script, a dracut
// module) and the tests that build the package with scripts/package and
// install it. It has no Go code of its own.
package packaging
