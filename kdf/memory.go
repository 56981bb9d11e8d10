package kdf

import "golang.org/x/sys/unix"

// memoryInfo returns physical, free and swap memory in KiB, or zeros when
// the system does not say.
func memoryInfo() (physKiB, freeKiB, swapKiB uint64) {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0, 0, 0
	}
	unit := uint64(si.Unit)
	if unit == 0 {
		unit = 1
	}
	return uint64(si.Totalram) * unit / 1024, uint64(si.Freeram) * unit / 1024, uint64(si.Totalswap) * unit / 1024
}

func physicalMemoryKiB() uint64 {
	phys, _, _ := memoryInfo()
	return phys
}

// adjustedMemoryKiB is the most Argon2 memory calibration may choose, as
// cryptsetup's pbkdf_adjusted_phys_memory_kb: half of physical memory and,
// without swap, half of free memory when that is above 64 MiB and lower.
// Implausible readings give DefaultCalibrateMemoryKiB.
func adjustedMemoryKiB() uint64 {
	phys, free, swap := memoryInfo()
	if phys < 128*1024 || phys > 0xFFFFFFFF {
		return DefaultCalibrateMemoryKiB
	}
	limit := phys / 2
	if swap == 0 {
		if half := free / 2; half > 64*1024 && half < limit {
			return half
		}
	}
	return limit
}
