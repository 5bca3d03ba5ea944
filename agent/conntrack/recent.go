package conntrack

// recent remembers the last few answers of a lookup that consecutive
// connections mostly repeat (a client and the service it calls, both ends on
// one host), so the close of each skips resolver locks and the hashing of
// strings and addresses. An answer is good for one generation (the table's
// flush count): what a resolver says can change, and it is asked again
// at least once per flush interval.
type recent[K comparable, V any] struct {
	keys [4]K
	vals [4]V
	gens [4]uint64 // generation+1 of each slot; 0: empty
	next int
}

func (r *recent[K, V]) get(k K, gen uint64) (V, bool) {
	for i := range r.keys {
		if r.gens[i] == gen+1 && r.keys[i] == k {
			return r.vals[i], true
		}
	}
	var zero V
	return zero, false
}

func (r *recent[K, V]) put(k K, gen uint64, v V) {
	r.keys[r.next], r.vals[r.next], r.gens[r.next] = k, v, gen+1
	r.next = (r.next + 1) % len(r.keys)
}
