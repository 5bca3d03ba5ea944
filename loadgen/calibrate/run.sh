#!/usr/bin/env bash
# Calibrates loadgen against reference tools on loopback, in one run:
#   stream  vs iperf3 (one stream, 128 KiB writes)        target >= 0.7
#   rr      vs sockperf ping-pong (64 B, one connection)   target >= 0.7
#   crr     vs crr.c, a C connect/send/recv/close loop     target >= 0.8
# Each figure takes SECONDS (default 5); ROUNDS rounds (default 2) alternate
# which side goes first; the table (markdown) shows every round and the median
# ratio. Usage: loadgen/calibrate/run.sh [SECONDS [ROUNDS]]
set -euo pipefail
secs=${1:-5}
rounds=${2:-2}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

need=()
for tool in iperf3 sockperf gcc python3; do command -v "$tool" >/dev/null || need+=("$tool"); done
if ((${#need[@]})); then
	echo "installing: ${need[*]}" >&2
	apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi
(cd "$root" && go build -o "$tmp/loadgen" ./loadgen/cmd/loadgen)
gcc -O2 -o "$tmp/crr" "$here/crr.c"

lg_port=25301 ip_port=25302 sp_port=25303
"$tmp/loadgen" server --listen "127.0.0.1:$lg_port" 2>"$tmp/lg.log" & pids+=($!)
iperf3 -s -p "$ip_port" >"$tmp/iperf3.log" 2>&1 & pids+=($!)
sockperf server --tcp -i 127.0.0.1 -p "$sp_port" >"$tmp/sockperf.log" 2>&1 & pids+=($!)
sleep 1

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }
loadgen() { "$tmp/loadgen" client --target "127.0.0.1:$lg_port" --duration "$secs" --concurrency 1 --json "$@"; }

measure() { # workload side -> one figure
	case "$1/$2" in
	# bits per second received
	stream/ref) iperf3 -c 127.0.0.1 -p "$ip_port" -t "$secs" -O 1 -J | json "d['end']['sum_received']['bits_per_second']" ;;
	stream/lg) loadgen --mode stream | json "d['throughput_bps']" ;;
	# 64-byte round trips per second
	rr/ref) sockperf ping-pong --tcp -i 127.0.0.1 -p "$sp_port" -t "$secs" -m 64 2>&1 | grep 'Valid Duration' |
		sed -n 's/.*RunTime=\([0-9.]*\) sec.*ReceivedMessages=\([0-9]*\).*/\2 \1/p' | awk '{printf "%.0f", $1 / $2}' ;;
	rr/lg) loadgen --mode rr --size 64 | json "d['ops_per_sec']" ;;
	# connect, 64-byte request and response, close, per second
	crr/ref) "$tmp/crr" 127.0.0.1 "$lg_port" "$secs" 64 | awk '{print $2}' ;;
	crr/lg) loadgen --mode crr --size 64 | json "d['ops_per_sec']" ;;
	esac
}

# Reference and loadgen alternate which goes first from round to round, so a
# change of background load does not always favour the same side.
declare -A ref lg
for ((r = 1; r <= rounds; r++)); do
	for w in stream rr crr; do
		if ((r % 2)); then
			ref[$w]+="$(measure $w ref) "
			lg[$w]+="$(measure $w lg) "
		else
			lg[$w]+="$(measure $w lg) "
			ref[$w]+="$(measure $w ref) "
		fi
	done
done

echo "| workload | reference | reference (per round) | loadgen (per round) | ratio (per round) | median ratio | target |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
row() { # name reference "ref values" "lg values" unit scale target
	awk -v n="$1" -v r="$2" -v a="$3" -v b="$4" -v u="$5" -v s="$6" -v t="$7" 'BEGIN {
		k = split(a, x, " "); split(b, y, " ")
		for (i = 1; i <= k; i++) {
			q[i] = y[i] / x[i]
			rs = rs sprintf("%s%.2f", i > 1 ? ", " : "", x[i] / s)
			ls = ls sprintf("%s%.2f", i > 1 ? ", " : "", y[i] / s)
			qs = qs sprintf("%s%.2f", i > 1 ? ", " : "", q[i])
		}
		for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (q[j] < q[i]) { tmp = q[i]; q[i] = q[j]; q[j] = tmp }
		med = (k % 2) ? q[(k + 1) / 2] : (q[k / 2] + q[k / 2 + 1]) / 2
		printf "| %s | %s | %s %s | %s %s | %s | %.2f | >= %s %s |\n", n, r, rs, u, ls, u, qs, med, t, (med >= t ? "ok" : "MISSED")
	}'
}
row stream "iperf3" "${ref[stream]}" "${lg[stream]}" "Gbit/s" 1e9 0.7
row rr "sockperf ping-pong" "${ref[rr]}" "${lg[rr]}" "kops/s" 1e3 0.7
row crr "crr.c (C loop)" "${ref[crr]}" "${lg[crr]}" "kops/s" 1e3 0.8
echo
echo "$(date -u +%FT%TZ), $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), ${secs}s per figure, $rounds rounds"
