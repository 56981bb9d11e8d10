# shellcheck shell=sh
# initrd-table.sh: sourced by volcrypt's initramfs-tools hook and dracut module, installed as
# /usr/share/volcrypt/initrd-table.sh. volcrypt_initrd_lines prints the crypttab lines the
# initramfs opens: the x-initrd.attach lines of BOTH /etc/volcrypt/crypttab and /etc/crypttab.
# Both, not the first that exists: the package ships /etc/volcrypt/crypttab (all comments), so
# "volcrypt's table, else /etc/crypttab" would always pick volcrypt's and silently leave root's
# /etc/crypttab line out of the initramfs. A name in both tables opens as volcrypt's table says
# (it is the table meant for volcrypt). On standard error it says what it leaves out: a second
# line for a name, and /etc/crypttab lines of types volcrypt does not open (plain, tcrypt,
# bitlk: cryptsetup's own initramfs handles those).
# VOLCRYPT_CRYPTTAB and VOLCRYPT_SYSTEM_CRYPTTAB override the two tables (tests).
volcrypt_initrd_lines() {
	volcrypt_own=${VOLCRYPT_CRYPTTAB:-/etc/volcrypt/crypttab}
	volcrypt_sys=${VOLCRYPT_SYSTEM_CRYPTTAB:-/etc/crypttab}
	set --
	if [ -r "$volcrypt_own" ]; then set -- "$volcrypt_own"; fi
	if [ -r "$volcrypt_sys" ] && [ "$volcrypt_sys" != "$volcrypt_own" ]; then set -- "$@" "$volcrypt_sys"; fi
	[ $# -gt 0 ] || return 0
	awk -v sys="$volcrypt_sys" '
		/^[ \t]*(#|$)/ { next }
		$4 !~ /(^|,)x-initrd\.attach(,|$)/ { next }
		FILENAME == sys && $4 ~ /(^|,)(plain|tcrypt|bitlk|tcrypt-[a-z]+|veracrypt)(,|$)/ {
			printf "volcrypt: %s: %s line %d ignored: not a LUKS volume (left to cryptsetup)\n", $1, FILENAME, FNR > "/dev/stderr"
			next
		}
		$1 in seen {
			printf "volcrypt: %s: %s line %d ignored: %s opens it\n", $1, FILENAME, FNR, seen[$1] > "/dev/stderr"
			next
		}
		{ seen[$1] = FILENAME " line " FNR; print }
	' "$@"
}
