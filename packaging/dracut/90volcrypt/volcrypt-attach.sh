#!/bin/sh
# dracut pre-mount hook: open the volumes of /etc/volcrypt/crypttab.
[ -s /etc/volcrypt/crypttab ] || return 0
modprobe -q dm_crypt
/usr/sbin/volcrypt attach-all --initrd --crypttab /etc/volcrypt/crypttab ||
	warn "volcrypt: could not open every volume of /etc/volcrypt/crypttab; type the recovery password when asked"
