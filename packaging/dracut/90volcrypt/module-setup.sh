#!/bin/bash
# dracut module: volcrypt opens the x-initrd.attach lines of /etc/volcrypt/crypttab (or, when that
# does not exist, /etc/crypttab) while dracut waits for root
# (TPM first, then a prompt), like the initramfs-tools hook. Install into
# /usr/lib/dracut/modules.d/90volcrypt and add add_dracutmodules+=" volcrypt " to dracut.conf.
check() {
	require_binaries volcrypt || return 1
	return 255 # only when asked for
}

depends() {
	echo dm rootfs-block
}

installkernel() {
	hostonly='' instmods dm_crypt tpm_tis tpm_crb xts essiv cbc
}

install() {
	inst_binary volcrypt /usr/sbin/volcrypt
	local table=/etc/volcrypt/crypttab
	[ -e "$table" ] || table=/etc/crypttab
	if [ -r "$table" ]; then
		mkdir -p "$initdir/etc/volcrypt"
		grep -v '^[[:space:]]*#' "$table" | awk '$4 ~ /(^|,)x-initrd\.attach(,|$)/' >"$initdir/etc/volcrypt/crypttab"
	fi
	# While dracut waits for root (initqueue), not after (pre-mount): root may be one of these volumes.
	inst_hook initqueue/settled 50 "$moddir/volcrypt-attach.sh"
}
