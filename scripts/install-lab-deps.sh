#!/usr/bin/env bash
# Installs the Debian packages the NAT lab tests need: the reference peers
# (miniupnpd with its nftables backend, miniupnpc's upnpc, natpmpc,
# python3-miniupnpc), nftables and iproute2, Debian's Chromium for the
# web UI's browser tests, and gcc with libc6-dev, which the race detector
# (go test -race, through cgo) needs. No service is started: a
# policy-rc.d that refuses every start is in place for the duration, and
# miniupnpd's debconf answer keeps it from starting at boot.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-lab-deps: must run as root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
pkgs="iproute2 nftables miniupnpd-nftables miniupnpc natpmpc python3-miniupnpc curl chromium gcc libc6-dev"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
if command -v debconf-set-selections >/dev/null; then
	debconf-set-selections <<'DEB'
miniupnpd miniupnpd/start_daemon boolean false
miniupnpd miniupnpd/ip6script boolean false
miniupnpd miniupnpd/force_igd_desc_v1 boolean false
DEB
fi
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing >/dev/null
