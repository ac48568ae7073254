#!/usr/bin/env bash
# Builds portfwd's release binaries for Linux on amd64, arm64, armv7 and
# mipsle (OpenWrt routers), stripped (-s -w) and with -trimpath, into
# bin/release/, and prints a table of their sizes: for each target the
# whole tool (portfwd) and the gateway alone (portfwd-gateway, for a
# router's flash). The version printed by `portfwd version` comes from the
# module and VCS information Go embeds, so build from a git checkout.
#
# portfwd-gateway is built smaller. With the gatewayonly tag it links no
# net/http at all (nor crypto/tls, whose package initialisation alone is
# 1.2 MB for mipsle): its HTTP types, request reader and ServeMux are
# internal/httpx's own, its server internal/httpserve, and package upnp
# sends its requests to the router above and its GENA events through
# upnp.ConnTransport, one connection per request. The tag also leaves out
# the router emulation for testing clients and the batched NAT-PMP/PCP
# I/O. nethttpomithttp2 (net/http without HTTP/2) no longer changes it, as
# nothing of net/http is left, and is kept so that one set of tags names
# the router build everywhere (CI, the tests). And it is built without
# inlining (-gcflags=all=-l), which costs a little CPU on a daemon that
# answers a few requests a second and saves 0.72 MB (720,896 bytes) for
# mipsle.
#
# The router build must fit a 16 MB-flash router: the script fails when
# portfwd-gateway for linux/mipsle is over GATEWAY_MAX_BYTES (default
# 8000000).
#
#   bash scripts/release.sh            # every target
#   TARGETS="linux/mipsle" bash scripts/release.sh
set -euo pipefail
cd "$(dirname "$0")/.."

out=bin/release
mkdir -p "$out"
targets=${TARGETS:-"linux/amd64 linux/arm64 linux/armv7 linux/mipsle"}

# Each row: command directory, binary name, extra go build flags.
commands=(
	"./cmd/portfwd portfwd"
	"./cmd/portfwd-gateway portfwd-gateway -tags=nethttpomithttp2,gatewayonly -gcflags=all=-l"
)

max=${GATEWAY_MAX_BYTES:-8000000}
over=""
printf '%-14s %-18s %12s %8s %8s\n' TARGET BINARY BYTES MB MiB
for target in $targets; do
	os=${target%/*} arch=${target#*/}
	env=(GOOS="$os" CGO_ENABLED=0)
	case "$arch" in
	armv7) env+=(GOARCH=arm GOARM=7) ;;
	# Most OpenWrt MIPS routers have no FPU: soft-float avoids the kernel's
	# FPU emulator.
	mipsle) env+=(GOARCH=mipsle GOMIPS=softfloat) ;;
	*) env+=(GOARCH="$arch") ;;
	esac
	for c in "${commands[@]}"; do
		read -r dir name flags <<<"$c"
		bin="$out/$name-$os-$arch"
		# shellcheck disable=SC2086 # $flags is a list of flags
		env "${env[@]}" go build -trimpath -ldflags='-s -w' $flags -o "$bin" "$dir"
		size=$(stat -c %s "$bin")
		printf '%-14s %-18s %12d %8.2f %8.2f\n' "$target" "$name" "$size" \
			"$(awk -v s="$size" 'BEGIN { print s / 1000000 }')" "$(awk -v s="$size" 'BEGIN { print s / 1048576 }')"
		if [ "$target/$name" = linux/mipsle/portfwd-gateway ] && [ "$size" -gt "$max" ]; then
			over="$bin is $size bytes, over the router build's target of $max"
		fi
	done
done
if [ -n "$over" ]; then
	echo "release.sh: $over (the README's \"Releases, packaging and licence\" says where the bytes go)" >&2
	exit 1
fi
