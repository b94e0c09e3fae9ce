#!/usr/bin/env sh
# Installs the Debian packages the tests talk to (rbldnsd, swaks, postfix for its
# tools, rspamd) without starting their system services: the tests start their own
# instances on loopback. Run as root. Usage: sh scripts/install-peers.sh PACKAGE...
set -eu
[ "$#" -gt 0 ] || exit 0
# policy-rc.d exiting 101 tells Debian's maintainer scripts not to start services.
created=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created=yes
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
[ -z "$created" ] || rm -f /usr/sbin/policy-rc.d
