//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// tcpobs: the observer's kernel side. Every TCP socket is followed from open to
// close with in-kernel aggregation: one record per closed socket crosses to
// user space, gathered per CPU into batches of up to CLOSE_BATCH (one
// transport record each); open sockets are read by user space in batches
// from `conns`.
//
// Hooks (all stable, all present on Debian's 5.10 .. 7.x):
//   tp_btf/inet_sock_set_state          lifecycle, process attribution, final totals
//   raw_tracepoint/inet_sock_set_state  the same where tp_btf does not load
//   raw_tracepoint/tcp_retransmit_skb   live retransmit count
//   raw_tracepoint/tcp_receive_reset    reset received
//   raw_tracepoint/tcp_send_reset       reset sent
//   sockops (cgroup v2 root)            per-ACK RTT samples of the sampled connections
//   raw_tracepoint/conns_live           never attached: run by user space before each
//                                       flush, reads open sockets' live counters (5.13+)
//   raw_tracepoint/flush_closes         never attached: run by user space on a CPU to
//                                       send that CPU's partial batch of close records
// Raw tracepoints are used instead of perf-event tracepoints because they do
// not copy the trace record before the program runs (on connection churn
// that copy alone is a visible share of the cost). The loader prefers the
// tp_btf twin of set_state: its socket pointer is BTF-typed, so socket fields
// are plain loads instead of one bpf_probe_read_kernel call each.
#include "vmlinux.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"
#include "bpf_tracing.h"
#include "tcpobs.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Set by the loader before load; the verifier prunes the branches they disable.
const volatile __u32 sample_rate = 1;  // 1 keeps every RTT sample
// 1: live counters ride on every ACK's callback and sampling thins ACKs (per-CPU
// maps, or no bpf_for_each_map_elem before 5.13). 0: conns_live reads them at
// flush time and sampling picks connections, whose every ACK is kept.
const volatile __u8 live_from_acks = 1;
const volatile __u64 sample_seed = 0; // per load: observers side by side draw differently
const volatile __u8 use_ringbuf = 1;   // 0: perf event array
const volatile __u8 percpu_conns = 0;  // conns is a per-CPU map
const volatile __u8 have_percpu_lookup = 0; // bpf_map_lookup_percpu_elem (5.19+)
const volatile __u32 nr_cpus = 1;
const volatile __u32 wakeup_bytes = 65536; // ring buffer: wake the reader past this backlog
// Close records per transport record. 1 sends each at once; more needs user
// space to run flush_closes on a CPU whose batch has waited (5.10+).
const volatile __u32 batch_len = 1;

// Force bpf2go to emit Go types for the shared structs.
const struct conn_event *unused_conn_event __attribute__((unused));
const struct close_batch *unused_close_batch __attribute__((unused));
const struct conn_state *unused_conn_state __attribute__((unused));
const struct listener_key *unused_listener_key __attribute__((unused));
const enum conn_flag *unused_conn_flag __attribute__((unused));
const enum direction *unused_direction __attribute__((unused));
const enum stat_idx *unused_stat_idx __attribute__((unused));

// The connection-state map. Its type and size are chosen at load time
// (--map-type, --max-connections); the definition here is the default.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); // struct sock *: unique while the socket lives, deleted at close
	__type(value, struct conn_state);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct listener_key);
	__type(value, struct owner);
} listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events_rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events_perf SEC(".maps");

// Close records are built in place here, not on the stack (300 bytes each).
// Slot 0 is the CPU's open batch. Slot 1 carries a lone record for a close
// that interrupted flush_closes on this CPU while it held slot 0.
// Sending them CLOSE_BATCH at a time takes the ring buffer's lock and its
// cache-cold header once per batch instead of once per close.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct close_batch);
} batches SEC(".maps");

static __always_inline void count_n(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += n; // per-CPU slot: no atomic needed
}

static __always_inline void count(__u32 idx) { count_n(idx, 1); }

// RD reads field f of kernel object p. With btf set (tp_btf programs) p is
// a BTF-typed pointer the verifier lets us dereference: a plain load with a
// fault handler. Raw tracepoints get an untyped pointer and need a helper
// call per read. btf is a literal at every call site of these always-inline
// functions, so the compiler keeps one branch only.
#define RD(btf, p, f) ((btf) ? (p)->f : BPF_CORE_READ(p, f))

// At CLOSE the kernel has already released the local port (inet_num is 0);
// inet_sport (network order), which the release leaves alone, still has it.
static __always_inline void read_tuple(struct sock *sk, struct tcp_sock *tp,
				       struct conn_state *st, const int btf)
{
	__u16 family = RD(btf, sk, __sk_common.skc_family);
	__u16 sport = RD(btf, sk, __sk_common.skc_num);
	if (!sport)
		sport = __builtin_bswap16(RD(btf, tp, inet_conn.icsk_inet.inet_sport));
	st->family = family;
	if (sport)
		st->sport = sport;
	st->dport = __builtin_bswap16(RD(btf, sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		__u32 *s4 = (__u32 *)st->saddr, *d4 = (__u32 *)st->daddr;
		*s4 = RD(btf, sk, __sk_common.skc_rcv_saddr);
		*d4 = RD(btf, sk, __sk_common.skc_daddr);
	} else if (btf) {
		__builtin_memcpy(st->saddr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
		__builtin_memcpy(st->daddr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8, 16);
	} else {
		BPF_CORE_READ_INTO(&st->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&st->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

static __always_inline void fill_listener_key(struct sock *sk, struct listener_key *k, const int btf)
{
	if (btf)
		k->netns = sk->__sk_common.skc_net.net->ns.inum;
	else
		k->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	k->port = RD(btf, sk, __sk_common.skc_num);
	k->family = RD(btf, sk, __sk_common.skc_family);
}

static __always_inline void owner_from_current(struct owner *o)
{
	o->pid = bpf_get_current_pid_tgid() >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(&o->comm, sizeof(o->comm));
}

static __always_inline void put_state(__u64 key, struct conn_state *st)
{
	if (bpf_map_update_elem(&conns, &key, st, BPF_ANY))
		count(STAT_MAP_FULL);
}

// Active open: connect() runs in the owning process, so `current` is the owner.
// Addresses and the destination port are set before the SYN_SENT transition,
// so a flush that finds the connection mid-handshake (or hanging on a dropped
// SYN) already knows whom it calls; the source port is bound only after it
// and is read again at ESTABLISHED or CLOSE.
static __always_inline void on_connect(struct sock *sk, struct tcp_sock *tp, __u64 key,
				      const int btf)
{
	struct conn_state st = {};
	st.start_ns = bpf_ktime_get_ns();
	st.direction = DIR_ACTIVE;
	read_tuple(sk, tp, &st, btf);
	owner_from_current(&st.owner);
	put_state(key, &st);
	count(STAT_OPEN_ACTIVE);
}

// Where live counters ride on ACKs, "sent" is bytes_acked, which may count
// the SYN: it is measured from its value at establishment. Where conns_live
// reads them, "sent" is the payload sent so far, with no baseline, and an
// active open needs nothing here: conns_live learns its source port and
// establishment from the socket, which spares a map lookup per connection.
static __always_inline void on_established(struct sock *sk, struct tcp_sock *tp, __u64 key,
					  int passive, const int btf)
{
	struct conn_state fresh = {}, *st = &fresh;

	if (passive) {
		// The child socket is new: no entry to look up (one left under
		// this address by a socket whose close we missed is stale).
		// The handshake completes in softirq: `current` is whoever was
		// running. The owner is the process that listens on this port.
		struct listener_key lk = {};
		fill_listener_key(sk, &lk, btf);
		struct owner *o = bpf_map_lookup_elem(&listeners, &lk);
		st->start_ns = bpf_ktime_get_ns();
		st->direction = DIR_PASSIVE;
		if (o)
			st->owner = *o;
		count(STAT_OPEN_PASSIVE);
	} else {
		st = bpf_map_lookup_elem(&conns, &key);
		if (!st)
			return; // opened before we attached, or the map was full
	}
	read_tuple(sk, tp, st, btf);
	st->flags |= FLAG_ESTABLISHED;
	if (live_from_acks) {
		st->acked_base = RD(btf, tp, bytes_acked);
		st->sent = st->acked_base;
	}
	if (st == &fresh)
		put_state(key, st);
}

static __always_inline void merge_state(struct conn_state *dst, struct conn_state *src)
{
	if (src->start_ns && (!dst->start_ns || src->start_ns < dst->start_ns)) {
		dst->start_ns = src->start_ns;
		dst->owner = src->owner;
		dst->direction = src->direction;
		dst->acked_base = src->acked_base;
	}
	if (src->sport)
		dst->sport = src->sport;
	dst->flags |= src->flags;
	dst->retransmits += src->retransmits;
	dst->rtt_samples += src->rtt_samples;
	dst->rtt_sum_us += src->rtt_sum_us;
	for (int b = 0; b < RTT_BUCKETS; b++)
		dst->rtt_hist[b] += src->rtt_hist[b];
}

// emit sends batch b's records to user space and empties it. A full
// transport loses them all, counted.
static __always_inline void emit(void *ctx, struct close_batch *b)
{
	__u32 n = b->n;
	if (n == 0 || n > CLOSE_BATCH) {
		b->n = 0;
		return;
	}
	__u64 size = offsetof(struct close_batch, ev) + (__u64)n * sizeof(struct conn_event);
	// The compiler knows size fits and would drop this check; hidden from
	// it, the check gives the verifier the bound its own arithmetic on n
	// can lose (a multiply becomes shifts and adds).
	barrier_var(size);
	if (size > sizeof(*b)) {
		b->n = 0;
		return;
	}
	long err;
	if (use_ringbuf) {
		// Wake the reader only once a backlog has piled up; it also
		// drains on a timer, so a trickle is never stranded.
		__u64 flags = BPF_RB_NO_WAKEUP;
		if (bpf_ringbuf_query(&events_rb, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
			flags = BPF_RB_FORCE_WAKEUP;
		err = bpf_ringbuf_output(&events_rb, b, size, flags);
	} else {
		err = bpf_perf_event_output(ctx, &events_perf, BPF_F_CURRENT_CPU, b, size);
	}
	if (err)
		count_n(STAT_TRANSPORT_FULL, n);
	b->n = 0;
}

// Close: final totals come from the socket itself, so they are exact whatever
// the sampling rate and even if a live update was missed. The record is
// built in place in this CPU's batch, which leaves once it holds
// batch_len records (or when user space runs flush_closes here).
static __always_inline void on_close(void *ctx, struct sock *sk, struct tcp_sock *tp, __u64 key,
				    int oldstate, const int btf)
{
	__u32 slot = 0;
	struct close_batch *b = bpf_map_lookup_elem(&batches, &slot);
	if (b && b->busy) {
		// flush_closes holds slot 0: this close interrupted it.
		slot = 1;
		b = bpf_map_lookup_elem(&batches, &slot);
		if (b)
			b->n = 0;
	}
	if (!b) { // array slots always exist; this keeps the verifier content
		bpf_map_delete_elem(&conns, &key);
		return;
	}
	b->busy = 1;
	barrier(); // busy is set before the batch is touched
	__u32 i = b->n;
	if (i >= CLOSE_BATCH)
		i = 0; // never: emit empties a batch at batch_len <= CLOSE_BATCH
	struct conn_event *ev = &b->ev[i];

	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (st) {
		ev->state = *st;
		if (percpu_conns) {
			// This CPU's slot holds only what ran here; gather the rest.
			if (have_percpu_lookup) {
				__builtin_memset(&ev->state, 0, sizeof(ev->state));
				for (__u32 cpu = 0; cpu < MAX_CPUS && cpu < nr_cpus; cpu++) {
					struct conn_state *s = bpf_map_lookup_percpu_elem(&conns, &key, cpu);
					if (s)
						merge_state(&ev->state, s);
				}
			} else {
				ev->state.flags |= FLAG_PARTIAL;
			}
		}
		bpf_map_delete_elem(&conns, &key);
	} else {
		__builtin_memset(&ev->state, 0, sizeof(ev->state));
		ev->state.flags = FLAG_UNTRACKED;
		count(STAT_UNTRACKED_CLOSE);
	}

	struct conn_state *s = &ev->state;
	read_tuple(sk, tp, s, btf);
	if (oldstate == TCP_SYN_SENT) {
		s->flags |= FLAG_CONNECT_FAILED;
		count(STAT_CONNECT_FAILED);
	}
	// An abort (close with SO_LINGER 0 or unread data, tcp_disconnect) sets
	// CLOSE before the kernel sends its reset, so tcp_send_reset finds no
	// entry. A direct jump to CLOSE from a synchronized state with no reset
	// received and no error (a timeout sets sk_err) is that abort.
	if (!(s->flags & FLAG_RESET_RX) &&
	    (oldstate == TCP_ESTABLISHED || oldstate == TCP_CLOSE_WAIT ||
	     oldstate == TCP_FIN_WAIT1 || oldstate == TCP_SYN_RECV) &&
	    RD(btf, sk, sk_err) == 0)
		s->flags |= FLAG_RESET_TX;
	ev->sk = key;
	ev->end_ns = bpf_ktime_get_ns();

	// Payload only: bytes_sent counts every transmitted payload byte
	// (retransmissions included, SYN/FIN excluded); bytes_received counts
	// sequence space, in which a received FIN takes one number.
	ev->bytes_sent = RD(btf, tp, bytes_sent) - RD(btf, tp, bytes_retrans);
	__u64 rcvd = RD(btf, tp, bytes_received);
	unsigned long skflags = RD(btf, sk, __sk_common.skc_flags);
	if ((skflags & (1UL << SOCK_DONE)) && rcvd > 0)
		rcvd -= 1;
	ev->bytes_received = rcvd;
	ev->total_retrans = RD(btf, tp, total_retrans);
	ev->srtt_us = RD(btf, tp, srtt_us) >> 3;
	ev->rttvar_us = RD(btf, tp, mdev_us) >> 2;
	ev->snd_cwnd = RD(btf, tp, snd_cwnd);
	ev->old_state = oldstate;
	ev->_pad = 0;
	count(STAT_CLOSE);

	b->n = i + 1;
	if (slot || i + 1 >= batch_len)
		emit(ctx, b);
	barrier(); // the batch is whole before busy clears
	b->busy = 0;
}

// Most transitions (FIN_WAIT*, CLOSE_WAIT, LAST_ACK, ...) need nothing.
static __always_inline int wanted(int newstate)
{
	return newstate == TCP_SYN_SENT || newstate == TCP_ESTABLISHED ||
	       newstate == TCP_LISTEN || newstate == TCP_CLOSE;
}

static __always_inline void on_set_state(void *ctx, struct sock *sk, struct tcp_sock *tp,
					 int oldstate, int newstate, const int btf)
{
	__u64 key = (__u64)sk;

	if (newstate == TCP_SYN_SENT) {
		on_connect(sk, tp, key, btf);
	} else if (newstate == TCP_ESTABLISHED) {
		if (oldstate == TCP_SYN_SENT && live_from_acks)
			on_established(sk, tp, key, 0, btf);
		else if (oldstate == TCP_SYN_RECV)
			on_established(sk, tp, key, 1, btf);
	} else if (newstate == TCP_LISTEN) {
		// listen() runs in the owning process.
		struct listener_key lk = {};
		struct owner o = {};
		fill_listener_key(sk, &lk, btf);
		owner_from_current(&o);
		bpf_map_update_elem(&listeners, &lk, &o, BPF_ANY);
	} else if (oldstate == TCP_LISTEN) {
		struct listener_key lk = {};
		fill_listener_key(sk, &lk, btf);
		bpf_map_delete_elem(&listeners, &lk);
	} else if (oldstate != TCP_CLOSE) {
		on_close(ctx, sk, tp, key, oldstate, btf);
	}
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(set_state_btf, struct sock *sk, int oldstate, int newstate)
{
	// Leave before touching the socket or any map.
	if (!wanted(newstate))
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk); // NULL unless TCP
	if (!tp)
		return 0;
	on_set_state(ctx, sk, tp, oldstate, newstate, 1);
	return 0;
}

SEC("raw_tracepoint/inet_sock_set_state")
int set_state(struct bpf_raw_tracepoint_args *ctx)
{
	struct sock *sk = (struct sock *)ctx->args[0];
	int newstate = ctx->args[2];

	if (!wanted(newstate))
		return 0;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	on_set_state(ctx, sk, (struct tcp_sock *)sk, ctx->args[1], newstate, 0);
	return 0;
}

SEC("raw_tracepoint/tcp_retransmit_skb")
int retransmit(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 key = ctx->args[0];
	count(STAT_RETRANSMIT);
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (st)
		__sync_fetch_and_add(&st->retransmits, 1);
	return 0;
}

static __always_inline int mark_reset(__u64 key, __u32 flag, __u32 stat)
{
	count(stat);
	if (!key)
		return 0; // a reset for no socket (e.g. SYN to a closed port)
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (st)
		st->flags |= flag;
	return 0;
}

SEC("raw_tracepoint/tcp_receive_reset")
int recv_reset(struct bpf_raw_tracepoint_args *ctx)
{
	return mark_reset(ctx->args[0], FLAG_RESET_RX, STAT_RESET_RX);
}

SEC("raw_tracepoint/tcp_send_reset")
int send_reset(struct bpf_raw_tracepoint_args *ctx)
{
	return mark_reset(ctx->args[0], FLAG_RESET_TX, STAT_RESET_TX);
}

static __always_inline __u32 log2_bucket(__u32 v)
{
	// bucket 0: < 1us; bucket b: [2^(b-1), 2^b) us; the last one is open.
	__u32 b = 0;
	if (v >= 1 << 16) { v >>= 16; b += 16; }
	if (v >= 1 << 8) { v >>= 8; b += 8; }
	if (v >= 1 << 4) { v >>= 4; b += 4; }
	if (v >= 1 << 2) { v >>= 2; b += 2; }
	if (v >= 1 << 1) { b += 1; }
	if (v)
		b += 1;
	return b < RTT_BUCKETS ? b : RTT_BUCKETS - 1;
}

// Whether this connection's RTT samples are kept (live_from_acks == 0): a
// hash of its addresses and ports with this load's seed, so every callback of
// a connection agrees without any state, including the per-ACK ones another
// sock_ops program may have enabled. The ephemeral port varies per
// connection; nothing here depends on what TCP measures.
static __always_inline int conn_sampled(struct bpf_sock_ops *skops)
{
	__u64 h = sample_seed ^ ((__u64)skops->local_port << 32 | skops->remote_port);
	h ^= (__u64)skops->remote_ip4 << 32 | skops->local_ip4;
	h ^= (__u64)skops->remote_ip6[3] << 32 | skops->local_ip6[3];
	h *= 0x9E3779B97F4A7C15ULL;
	return ((h >> 32) * sample_rate) >> 32 == 0; // the top bits: the best mixed
}

SEC("sockops")
int sock_ops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;

	// Sampling thins only the RTT samples; the draw (a seeded hash of the
	// connection, or a random number per ACK) is independent of the RTT, so
	// what it keeps is an unbiased subset. Where
	// live counters come from conns_live, an unsampled connection never gets
	// the per-ACK callback at all: it costs nothing per ACK.
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB || op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
		if (!live_from_acks && sample_rate > 1 && !conn_sampled(skops)) {
			count(STAT_RTT_SAMPLED_OUT);
			return 1;
		}
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_RTT_CB_FLAG);
		return 1;
	}
	if (op != BPF_SOCK_OPS_RTT_CB)
		return 1;
	if (sample_rate > 1) {
		if (!live_from_acks && !conn_sampled(skops))
			return 1; // another program enabled this callback: not ours to keep
		if (live_from_acks && bpf_get_prandom_u32() % sample_rate) {
			count(STAT_RTT_SAMPLED_OUT);
			return 1;
		}
	}
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	__u64 key = (__u64)sk;
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (!st)
		return 1;

	// args[0] is the measured RTT of this ACK (5.12+); older kernels pass 0.
	__u32 rtt = skops->args[0];
	if (!rtt)
		rtt = skops->srtt_us >> 3;
	// Plain adds: sock_ops callbacks run under the socket's lock, so no
	// other writer touches this socket's entry meanwhile.
	st->rtt_hist[log2_bucket(rtt)] += 1;
	st->rtt_samples += 1;
	st->rtt_sum_us += rtt;
	count(STAT_RTT_SAMPLE);
	if (!live_from_acks)
		return 1;
	// Past ESTABLISHED the counters include a FIN's sequence number; the
	// exact totals come at CLOSE, so live values stop here and never run ahead.
	if (skops->state == TCP_ESTABLISHED) {
		st->sent = skops->bytes_acked;
		st->bytes_received = skops->bytes_received;
	}
	st->srtt_us = skops->srtt_us >> 3;
	st->snd_cwnd = skops->snd_cwnd;
	st->total_retrans = skops->total_retrans;
	if (percpu_conns) // orders the CPUs' slots when user space merges them
		st->updated_ns = bpf_ktime_get_ns();
	return 1;
}

// conns_live refreshes the live counters of every open connection from its
// socket. It is never attached: user space runs it (BPF_PROG_TEST_RUN) right
// before each batch read of `conns`, so no per-ACK work is needed to keep byte
// counts current, and they are exact on both sockets even when one only
// receives. It runs under RCU and TCP sockets are SLAB_TYPESAFE_BY_RCU: the
// memory behind a key stays a TCP socket while it is read, and the port check
// skips one freed and reused meanwhile. Not for per-CPU maps (they keep
// live_from_acks): a write would land in this CPU's slot only.
static long refresh_live(void *map, __u64 *key, struct conn_state *st, void *unused)
{
	struct sock *sk = (struct sock *)*key;
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	if (__builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport)) != st->dport)
		return 0;
	__u16 num = BPF_CORE_READ(sk, __sk_common.skc_num);
	// An active open's source port is bound right after the transition
	// that created its entry (0 again once the socket is closed), and its
	// establishment is seen here first.
	if (!st->sport)
		st->sport = num;
	// Past ESTABLISHED the counters include a FIN's sequence number; the
	// exact totals come at CLOSE, so live values stop here.
	if (BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_ESTABLISHED || num != st->sport)
		return 0;
	// What the close record will count (sent less retransmitted), so the
	// live value never runs ahead of the final one.
	__u64 sent = BPF_CORE_READ(tp, bytes_sent) - BPF_CORE_READ(tp, bytes_retrans);
	__u64 received = BPF_CORE_READ(tp, bytes_received);
	// Most open connections are idle between flushes: their RTT and window
	// cannot have moved without data either way, so their colder cache
	// lines are not read (retransmissions are counted by their own hook).
	if ((st->flags & FLAG_ESTABLISHED) && sent == st->sent && received == st->bytes_received)
		return 0;
	st->flags |= FLAG_ESTABLISHED;
	st->sent = sent;
	st->bytes_received = received;
	st->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	st->snd_cwnd = BPF_CORE_READ(tp, snd_cwnd);
	st->total_retrans = BPF_CORE_READ(tp, total_retrans);
	return 0;
}

SEC("raw_tracepoint/conns_live")
int conns_live(void *ctx)
{
	bpf_for_each_map_elem(&conns, refresh_live, NULL, 0);
	return 0;
}

// flush_closes sends this CPU's partial batch of close records. It is never
// attached: each time user space drains the transport it runs this
// (BPF_PROG_TEST_RUN with a CPU, in an interrupt on that CPU) wherever a
// batch waits, so a close record is held back at most one drain interval,
// as it was in the transport before batching. A batch whose writer this
// interrupted (busy) is left to that writer.
SEC("raw_tracepoint/flush_closes")
int flush_closes(void *ctx)
{
	__u32 slot = 0;
	struct close_batch *b = bpf_map_lookup_elem(&batches, &slot);
	if (!b || b->busy || !b->n)
		return 0;
	b->busy = 1;
	barrier();
	emit(ctx, b);
	barrier();
	b->busy = 0;
	return 0;
}
