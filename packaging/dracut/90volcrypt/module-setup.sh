#!/bin/bash
# dracut module: volcrypt opens the x-initrd.attach lines of /etc/volcrypt/crypttab and /etc/crypttab
# (both; a name in both as volcrypt's table says: /usr/share/volcrypt/initrd-table.sh) while dracut
# waits for root
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
	# shellcheck source=../../lib/initrd-table.sh
	. "${VOLCRYPT_LIB:-/usr/share/volcrypt}/initrd-table.sh" || return 1
	mkdir -p "$initdir/etc/volcrypt"
	volcrypt_initrd_lines >"$initdir/etc/volcrypt/crypttab" || return 1
	# With systemd in the initramfs, volcrypt asks through systemd-ask-password, answered by the
	# console or plymouth agents dracut's systemd module brings (dracut-ng: its systemd-ask-password
	# module); the binaries themselves, in case they are not there. Not tested here (dracut and
	# initramfs-tools conflict on Debian).
	if dracut_module_included systemd; then
		inst_multiple -o systemd-ask-password systemd-tty-ask-password-agent
	fi
	# While dracut waits for root (initqueue), not after (pre-mount): root may be one of these volumes.
	inst_hook initqueue/settled 50 "$moddir/volcrypt-attach.sh"
}
