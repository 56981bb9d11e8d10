package userspace

// KeepMapped leaves decrypted pages mapped (as before MADV_DONTNEED), for
// BenchmarkSequential's comparison.
func (ct *Ciphertext) KeepMapped() { ct.keep = true }
