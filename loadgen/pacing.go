package loadgen

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Open-loop pacing needs sleeps far shorter than a millisecond (at 10k ops/s a
// worker's gap is 100 µs), and any oversleep counts as latency because latency
// is measured from the due time. time.Sleep cannot deliver that: an idle Go
// runtime waits for timers in epoll_wait, whose timeout has millisecond
// granularity. So a pacing worker keeps its own thread and sleeps in
// nanosleep(2) with the thread's timer slack cut from 50 µs to 1 µs.

// preciseSleeper pins the calling goroutine to its thread, for good: the thread
// ends with the goroutine, taking its timer-slack setting with it.
func preciseSleeper() {
	runtime.LockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
}

// sleepUntil blocks the thread until base+due.
func sleepUntil(base time.Time, due time.Duration) {
	for {
		left := due - time.Since(base)
		if left <= 0 {
			return
		}
		ts := unix.NsecToTimespec(int64(left))
		if err := unix.Nanosleep(&ts, nil); err == nil {
			return
		}
		// EINTR: recompute what is left and sleep again.
	}
}
