// Package arch holds no code: its test keeps the package layering of
// ../../STYLE (header and kdf free of devices, tpm free of header, only
// volume and cmd wiring them together) from eroding.
package arch
