#!/bin/bash
# dracut module: volcrypt opens the x-initrd.attach lines of /etc/crypttab before root is mounted
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
	hostonly='' instmods dm_crypt tpm_tis tpm_crb
}

install() {
	inst_binary volcrypt /usr/sbin/volcrypt
	if [ -r /etc/crypttab ]; then
		mkdir -p "$initdir/etc/volcrypt"
		grep -v '^[[:space:]]*#' /etc/crypttab | awk '$4 ~ /(^|,)x-initrd\.attach(,|$)/' >"$initdir/etc/volcrypt/crypttab"
	fi
	inst_hook pre-mount 10 "$moddir/volcrypt-attach.sh"
}
