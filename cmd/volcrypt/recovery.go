package main

func normalizeRecovery(b []byte) []byte { return b }
