/* Types shared by the kernel programs and Go (bpf2go -type keeps them in step). */
#ifndef TCPOBS_H
#define TCPOBS_H

#define AF_INET 2
#define AF_INET6 10
#define RTT_BUCKETS 24
#define MAX_CPUS 256
#define CLOSE_BATCH 8 /* close records per transport record, at most */

enum direction {
	DIR_UNKNOWN = 0,
	DIR_ACTIVE = 1,  /* this host connected */
	DIR_PASSIVE = 2, /* this host accepted */
};

enum conn_flag {
	FLAG_ESTABLISHED = 1 << 0,
	FLAG_CONNECT_FAILED = 1 << 1, /* SYN_SENT -> CLOSE */
	FLAG_RESET_RX = 1 << 2,
	FLAG_RESET_TX = 1 << 3,
	FLAG_PARTIAL = 1 << 4,   /* per-CPU map without cross-CPU lookup: this CPU's share only */
	FLAG_UNTRACKED = 1 << 5, /* closed without an open record: before attach, or evicted */
};

/* Indexes of the per-CPU `stats` counters. */
enum stat_idx {
	STAT_OPEN_ACTIVE,
	STAT_OPEN_PASSIVE,
	STAT_CLOSE,
	STAT_CONNECT_FAILED,
	STAT_RESET_RX,
	STAT_RESET_TX,
	STAT_RETRANSMIT,
	STAT_RTT_SAMPLE,
	STAT_RTT_SAMPLED_OUT,
	STAT_MAP_FULL,
	STAT_TRANSPORT_FULL,
	STAT_UNTRACKED_CLOSE,
	STAT_MAX,
};

struct owner {
	__u64 cgroup_id;
	__u32 pid;
	char comm[16];
};

struct listener_key {
	__u32 netns;
	__u16 port;
	__u16 family;
};

struct conn_state {
	__u64 start_ns;
	__u64 updated_ns;     /* last sampled per-ACK update */
	__u64 acked_base;     /* per-ACK mode: bytes_acked at ESTABLISHED (the SYN may count) */
	__u64 sent;           /* live payload sent, less acked_base: bytes acked as of the last
	                         sampled ACK (per-ACK mode) or bytes sent as of the last flush */
	__u64 bytes_received; /* live, as of the last sampled ACK or flush */
	struct owner owner;
	__u32 retransmits;    /* live, every retransmission */
	__u32 total_retrans;  /* live, per sampled ACK */
	__u32 srtt_us;
	__u32 snd_cwnd;
	__u32 rtt_samples;
	__u32 flags;
	__u64 rtt_sum_us;     /* sum of the kept RTT samples */
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u8 direction;
	__u8 _pad;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 rtt_hist[RTT_BUCKETS];
};

/* One per closed socket. */
struct conn_event {
	__u64 sk;
	__u64 end_ns;
	__u64 bytes_sent;     /* exact payload */
	__u64 bytes_received; /* exact payload */
	__u32 total_retrans;
	__u32 srtt_us;
	__u32 rttvar_us;
	__u32 snd_cwnd;
	__u32 old_state;
	__u32 _pad;
	struct conn_state state;
};

/* What crosses to user space: the close records one CPU gathered, n of
 * them (the transport record ends after ev[n-1]). */
struct close_batch {
	__u32 n;
	__u32 busy; /* a writer on this CPU is mid-update (user space ignores it) */
	struct conn_event ev[CLOSE_BATCH];
};

#endif
