package metadata

// lru is a fixed-capacity least-recently-used map from cgroup ID to ident.
// Entries live in one slice linked by indices, so a hit or an update of an
// existing key allocates nothing and eviction reuses the evicted slot. Not
// safe for concurrent use: the Resolver guards it.
type lru struct {
	cap     int
	index   map[uint64]int32
	entries []lruEntry
	head    int32 // most recently used, -1 when empty
	tail    int32 // least recently used, -1 when empty
}

type lruEntry struct {
	key        uint64
	val        ident
	prev, next int32
}

func newLRU(capacity int) *lru {
	if capacity < 1 {
		capacity = 1
	}
	return &lru{cap: capacity, index: make(map[uint64]int32, capacity), head: -1, tail: -1}
}

func (c *lru) len() int { return len(c.index) }

// get returns the value for key and marks it most recently used.
func (c *lru) get(key uint64) (ident, bool) {
	i, ok := c.index[key]
	if !ok {
		return ident{}, false
	}
	c.moveToFront(i)
	return c.entries[i].val, true
}

// add inserts or replaces key as the most recently used entry, evicting the
// least recently used one when full.
func (c *lru) add(key uint64, val ident) {
	if i, ok := c.index[key]; ok {
		c.entries[i].val = val
		c.moveToFront(i)
		return
	}
	c.insert(key, val)
}

// addIfAbsent inserts key without disturbing the recency of an existing
// entry; used to pre-fill from a hierarchy walk.
func (c *lru) addIfAbsent(key uint64, val ident) {
	if _, ok := c.index[key]; !ok {
		c.insert(key, val)
	}
}

func (c *lru) insert(key uint64, val ident) {
	var i int32
	if len(c.entries) < c.cap {
		i = int32(len(c.entries))
		c.entries = append(c.entries, lruEntry{})
	} else {
		i = c.tail
		c.unlink(i)
		delete(c.index, c.entries[i].key)
	}
	c.entries[i] = lruEntry{key: key, val: val, prev: -1, next: -1}
	c.index[key] = i
	c.pushFront(i)
}

func (c *lru) moveToFront(i int32) {
	if c.head == i {
		return
	}
	c.unlink(i)
	c.pushFront(i)
}

func (c *lru) unlink(i int32) {
	e := &c.entries[i]
	if e.prev >= 0 {
		c.entries[e.prev].next = e.next
	} else {
		c.head = e.next
	}
	if e.next >= 0 {
		c.entries[e.next].prev = e.prev
	} else {
		c.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (c *lru) pushFront(i int32) {
	e := &c.entries[i]
	e.prev, e.next = -1, c.head
	if c.head >= 0 {
		c.entries[c.head].prev = i
	}
	c.head = i
	if c.tail < 0 {
		c.tail = i
	}
}
