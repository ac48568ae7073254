#!/usr/bin/env bash
# Builds portfwd's release binaries for Linux on amd64, arm64, armv7 and
# mipsle (OpenWrt routers), stripped (-s -w) and with -trimpath, into
# bin/release/, and prints a table of their sizes. The version printed by
# `portfwd version` comes from the module and VCS information Go embeds, so
# build from a git checkout.
#
#   bash scripts/release.sh            # every target
#   TARGETS="linux/mipsle" bash scripts/release.sh
set -euo pipefail
cd "$(dirname "$0")/.."

out=bin/release
mkdir -p "$out"
targets=${TARGETS:-"linux/amd64 linux/arm64 linux/armv7 linux/mipsle"}

# Each row: command directory, binary name.
commands=("./cmd/portfwd portfwd")

printf '%-14s %-22s %12s %8s\n' TARGET BINARY BYTES MiB
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
		dir=${c% *} name=${c#* }
		bin="$out/$name-$os-$arch"
		env "${env[@]}" go build -trimpath -ldflags='-s -w' -o "$bin" "$dir"
		size=$(stat -c %s "$bin")
		printf '%-14s %-22s %12d %8.2f\n' "$target" "$name" "$size" "$(awk -v s="$size" 'BEGIN { print s / 1048576 }')"
	done
done
