package metadata

import (
	"math/rand/v2"
	"testing"
)

func TestLRUEvictsLeastRecentlyUsed(t *testing.T) {
	c := newLRU(3)
	for k := uint64(1); k <= 3; k++ {
		c.add(k, ident{containerID: string(rune('a' + k))})
	}
	c.get(1)                                        // 1 is now the most recent; 2 the least
	c.add(4, ident{})                               // evicts 2
	c.addIfAbsent(3, ident{containerID: "changed"}) // no effect, no bump
	c.add(5, ident{})                               // evicts 3
	for k, want := range map[uint64]bool{1: true, 2: false, 3: false, 4: true, 5: true} {
		if _, ok := c.get(k); ok != want {
			t.Errorf("key %d present = %v, want %v", k, ok, want)
		}
	}
	if c.len() != 3 {
		t.Errorf("len = %d, want 3", c.len())
	}
}

// TestLRUAgainstModel checks the intrusive list against a naive model under
// random operations.
func TestLRUAgainstModel(t *testing.T) {
	const capacity = 8
	c := newLRU(capacity)
	var order []uint64 // most recent first
	touch := func(k uint64) {
		for i, o := range order {
			if o == k {
				order = append(order[:i], order[i+1:]...)
				break
			}
		}
		order = append([]uint64{k}, order...)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		k := rng.Uint64N(20)
		switch rng.IntN(3) {
		case 0:
			_, ok := c.get(k)
			inModel := false
			for _, o := range order {
				inModel = inModel || o == k
			}
			if ok != inModel {
				t.Fatalf("get(%d) = %v, model says %v", k, ok, inModel)
			}
			if ok {
				touch(k)
			}
		default:
			c.add(k, ident{})
			touch(k)
			if len(order) > capacity {
				order = order[:capacity]
			}
		}
		if c.len() != len(order) {
			t.Fatalf("len = %d, model %d", c.len(), len(order))
		}
	}
	// Walk the list from the head: it must be the model's order exactly.
	i := 0
	for e := c.head; e >= 0; e = c.entries[e].next {
		if c.entries[e].key != order[i] {
			t.Fatalf("position %d: key %d, model %d", i, c.entries[e].key, order[i])
		}
		i++
	}
}
