#!/usr/bin/env bash
# Builds Prometheus 3 (whose OTLP receiver the privileged OTLP test pushes
# to) from Go modules once and caches it; a second run is instant. Prints the
# binary's path. Needs only Go and the module proxy: a few minutes on 2
# cores the first time (more on a cold module cache), ~75 MB binary.
#
#   agent/export/otlp/testdata/get-receiver.sh
#   PROMETHEUS_MODULE_VERSION=v0.315.1 agent/export/otlp/testdata/get-receiver.sh
#
# Prometheus v3.X.Y is tagged v0.3XX.Y as a Go module (v0.316.0 = v3.16.0).
set -euo pipefail
version="${PROMETHEUS_MODULE_VERSION:-v0.316.0}"
bin_dir="${EBPF_NET_OBS_CACHE:-$HOME/.cache/ebpf-net-obs}/bin"
out="$bin_dir/prometheus3-$version"
link="$bin_dir/prometheus3" # where the test looks (or $EBPF_NET_OBS_PROMETHEUS3)
mkdir -p "$bin_dir"
if [ ! -x "$out" ]; then
	tmp=$(mktemp -d "$bin_dir/.build.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	start=$(date +%s)
	echo "get-receiver: building Prometheus $version with its OTLP receiver (first time only)..." >&2
	# remove_all_sd leaves out every service discovery (cloud SDKs, client-go):
	# the OTLP receiver needs none, and the build is far smaller.
	GOBIN="$tmp" GOFLAGS="-buildvcs=false" nice -n 10 go install -tags remove_all_sd "github.com/prometheus/prometheus/cmd/prometheus@$version" >&2
	mv "$tmp/prometheus" "$out"
	echo "get-receiver: built in $(( $(date +%s) - start ))s" >&2
fi
ln -sfn "$(basename "$out")" "$link"
echo "get-receiver: Prometheus module $version ready" >&2
echo "$link"
