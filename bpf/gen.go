// Package bpf holds the observer's kernel programs and their generated Go
// bindings. The objects are committed so that building needs Go only;
// `make generate` recompiles them with the pinned clang.
package bpf

//go:generate go tool bpf2go -cc ${BPF_CLANG} -strip ${BPF_STRIP} -cflags "-O2 -g -Wall -Werror" -target amd64 -type conn_event -type close_batch -type conn_state -type owner -type listener_key -type stat_idx -type conn_flag -type direction Tcpobs tcpobs.c -- -I./headers
