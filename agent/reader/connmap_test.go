package reader

import "testing"

// Three CPUs' shares of one connection: CPU 1 saw the open; CPU 0 saw only
// ACKs (no identity); CPU 2 has a later start, as a stale slot would.
func cpuShares() [3]State {
	var s [3]State

	s[0].UpdatedNs, s[0].SrttUs, s[0].SndCwnd = 300, 1100, 30 // the latest update
	s[0].Sent, s[0].BytesReceived, s[0].TotalRetrans = 5000, 700, 4
	s[0].Retransmits, s[0].RttSamples, s[0].RttSumUs = 1, 2, 20
	s[0].RttHist[1], s[0].RttHist[4] = 1, 1
	s[0].Flags = 1 << 2

	s[1].StartNs, s[1].AckedBase, s[1].Direction = 100, 1, 2
	s[1].Owner.Pid, s[1].Owner.CgroupId, s[1].Owner.Comm[0] = 7, 70, 'a'
	s[1].Family, s[1].Sport, s[1].Dport = 2, 8080, 51000
	s[1].Saddr[0], s[1].Daddr[0] = 10, 11
	s[1].UpdatedNs, s[1].SrttUs, s[1].SndCwnd = 200, 999, 20
	s[1].Sent, s[1].BytesReceived, s[1].TotalRetrans = 3000, 900, 6
	s[1].Retransmits, s[1].RttSamples, s[1].RttSumUs = 2, 3, 30
	s[1].RttHist[1], s[1].RttHist[2] = 2, 1
	s[1].Flags = 1

	s[2].StartNs, s[2].AckedBase, s[2].Direction = 150, 9, 1
	s[2].Owner.Pid, s[2].Owner.CgroupId = 9, 90
	s[2].UpdatedNs, s[2].SrttUs = 50, 5
	s[2].Sent = 10
	s[2].Retransmits, s[2].RttSamples, s[2].RttSumUs = 4, 1, 7
	s[2].RttHist[2] = 1
	return s
}

func TestMergeState(t *testing.T) {
	for _, order := range [][3]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}} {
		s := cpuShares()
		var m State
		for _, i := range order {
			MergeState(&m, &s[i])
		}
		// Identity from the earliest start.
		if m.StartNs != 100 || m.Owner.Pid != 7 || m.Owner.CgroupId != 70 || m.Owner.Comm[0] != 'a' || m.Direction != 2 || m.AckedBase != 1 {
			t.Errorf("order %v: identity start=%d pid=%d cgroup=%d dir=%d base=%d, want CPU 1's", order,
				m.StartNs, m.Owner.Pid, m.Owner.CgroupId, m.Direction, m.AckedBase)
		}
		if m.Family != 2 || m.Sport != 8080 || m.Dport != 51000 || m.Saddr[0] != 10 || m.Daddr[0] != 11 {
			t.Errorf("order %v: addresses family=%d %d->%d", order, m.Family, m.Sport, m.Dport)
		}
		// Latest srtt and cwnd by UpdatedNs.
		if m.UpdatedNs != 300 || m.SrttUs != 1100 || m.SndCwnd != 30 {
			t.Errorf("order %v: updated=%d srtt=%d cwnd=%d, want CPU 0's 300 1100 30", order, m.UpdatedNs, m.SrttUs, m.SndCwnd)
		}
		// Cumulative counters: the largest.
		if m.Sent != 5000 || m.BytesReceived != 900 || m.TotalRetrans != 6 {
			t.Errorf("order %v: sent=%d received=%d total_retrans=%d, want maxima 5000 900 6", order, m.Sent, m.BytesReceived, m.TotalRetrans)
		}
		// Per-CPU event counts: the sum.
		if m.Retransmits != 7 || m.RttSamples != 6 || m.RttSumUs != 57 {
			t.Errorf("order %v: retransmits=%d samples=%d sum=%d, want sums 7 6 57", order, m.Retransmits, m.RttSamples, m.RttSumUs)
		}
		if m.RttHist[1] != 3 || m.RttHist[2] != 2 || m.RttHist[4] != 1 || m.RttHist[0] != 0 {
			t.Errorf("order %v: hist %v", order, m.RttHist[:5])
		}
		var hist uint32
		for _, v := range m.RttHist {
			hist += v
		}
		if hist != m.RttSamples {
			t.Errorf("order %v: histogram holds %d samples, RttSamples %d", order, hist, m.RttSamples)
		}
		if m.Flags != 0b101 {
			t.Errorf("order %v: flags %b, want the union 101", order, m.Flags)
		}
	}
}

func TestMergeStateSingleCPUIsIdentity(t *testing.T) {
	s := cpuShares()
	var m State
	MergeState(&m, &s[1])
	if m != s[1] {
		t.Errorf("merging one share into zero changed it\n got %+v\nwant %+v", m, s[1])
	}
}
