#!/bin/sh
# dracut initqueue/settled hook (sourced by dracut's main loop): open the volumes of
# /etc/volcrypt/crypttab. It runs while dracut waits for the root device, each time udev has
# settled, so a root file system on a volume volcrypt opens is found. (A pre-mount hook runs only
# after that wait, which then never ends.) Once every volume is open it removes itself; until then
# a device that appears later is tried on the next pass (open volumes are skipped).
[ -s /etc/volcrypt/crypttab ] || return 0
modprobe -q dm_crypt
if /usr/sbin/volcrypt attach-all --initrd --crypttab /etc/volcrypt/crypttab; then
	# shellcheck disable=SC2154 # job: set by dracut's initqueue loop to the hook being run
	rm -f -- "$job"
elif [ ! -e /tmp/volcrypt.warned ]; then
	: >/tmp/volcrypt.warned
	warn "volcrypt: could not open every volume of /etc/volcrypt/crypttab yet; a device that appears later is tried again; type the recovery password when asked"
fi
