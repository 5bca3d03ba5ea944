package runner

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/measure/child"
)

// holding is a running `loadgen hold`: connections kept open beside the
// load, one byte each per 10 s so their counters move now and then.
type holding struct{ proc *child.Process }

// holdTrickle is each held connection's traffic: enough for live counters
// to change between flushes on some of them, little enough to stay idle.
const holdTrickle = 10 * time.Second

func startHold(ctx context.Context, bin string, conns int) (*holding, error) {
	p, err := child.Start(ctx, bin, "hold", "--conns", strconv.Itoa(conns), "--trickle", holdTrickle.String(), "--json")
	if err != nil {
		return nil, fmt.Errorf("start loadgen hold: %w", err)
	}
	// Opening is about 20 µs per connection here; a minute covers 100k
	// on a slow machine.
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && !p.Exited() {
		if strings.Contains(p.Tail(), `"state":"ready"`) {
			return &holding{p}, nil
		}
		if err := child.Sleep(ctx, 20*time.Millisecond); err != nil {
			p.Stop(5 * time.Second)
			return nil, err
		}
	}
	p.Stop(5 * time.Second)
	return nil, fmt.Errorf("loadgen hold --conns %d not ready: %s", conns, child.LastLine(p.Tail()))
}

func (h *holding) stop() error { return h.proc.Stop(30 * time.Second) }

// holdSettle is how long an arm waits after its held connections are open:
// two of the observer's flushes, so they are in its map and its tables
// before the window opens.
func holdSettle(c matrix.Cell) time.Duration {
	flush := c.FlushInterval.D()
	if flush <= 0 {
		flush = time.Second // the observer's default
	}
	return 2*flush + 500*time.Millisecond
}
