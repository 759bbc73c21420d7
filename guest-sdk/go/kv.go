package wasmgate

import "unsafe"

//go:wasmimport wasmgate:gateway/kv@0.1.0 get
func kvGet(keyPtr, keyLen, ret uint32)

//go:wasmimport wasmgate:gateway/kv@0.1.0 set
func kvSet(keyPtr, keyLen, valuePtr, valueLen, ttlTag uint32, ttlMs int64, ret uint32)

//go:wasmimport wasmgate:gateway/kv@0.1.0 delete
func kvDelete(keyPtr, keyLen, ret uint32)

//go:wasmimport wasmgate:gateway/kv@0.1.0 exists
func kvExists(keyPtr, keyLen, ret uint32)

//go:wasmimport wasmgate:gateway/kv@0.1.0 list-keys
func kvListKeys(prefixPtr, prefixLen, cursorTag, cursorPtr, cursorLen, ret uint32)

//go:wasmimport wasmgate:gateway/kv@0.1.0 list-entries
func kvListEntries(prefixPtr, prefixLen, cursorTag, cursorPtr, cursorLen, ret uint32)

//go:wasmimport wasmgate:gateway/kv@0.1.0 get-many
func kvGetMany(keysPtr, keysCount, ret uint32)

//go:wasmimport wasmgate:gateway/kv@0.1.0 increment
func kvIncrement(keyPtr, keyLen uint32, delta int64, ret uint32)

//go:wasmimport wasmgate:gateway/kv@0.1.0 compare-and-swap
func kvCompareAndSwap(keyPtr, keyLen, expectedTag, expectedPtr, expectedLen, valuePtr, valueLen, ret uint32)

// KV is the service's key-value store: shared by every connection and call
// of the service, and by no other service. Keys are at most 512 bytes.
var KV kv

type kv struct{}

// Get reads a key; ok is false when it is absent (or expired).
func (kv) Get(key string) (value []byte, ok bool, err error) {
	kp, kl := str(key)
	kvGet(kp, kl, retAddress())
	if err := failure(4); err != nil {
		return nil, false, err
	}
	if retU8(4) == 0 {
		return nil, false, nil
	}
	return bytesAt(retU32(8), retU32(12)), true, nil
}

// Set writes a key; ttlMs > 0 makes it expire after that many
// milliseconds, 0 keeps it until deleted.
func (kv) Set(key string, value []byte, ttlMs uint64) error {
	kp, kl := str(key)
	vp, vl := bin(value)
	var tag uint32
	if ttlMs > 0 {
		tag = 1
	}
	kvSet(kp, kl, vp, vl, tag, int64(ttlMs), retAddress())
	return failure(4)
}

// Delete removes a key; whether it was there.
func (kv) Delete(key string) (bool, error) {
	kp, kl := str(key)
	kvDelete(kp, kl, retAddress())
	if err := failure(4); err != nil {
		return false, err
	}
	return retU8(4) != 0, nil
}

// Exists says whether a key is there.
func (kv) Exists(key string) (bool, error) {
	kp, kl := str(key)
	kvExists(kp, kl, retAddress())
	if err := failure(4); err != nil {
		return false, err
	}
	return retU8(4) != 0, nil
}

// Increment adds delta to the counter at key (absent counts as 0), at once
// for every caller; the new value.
func (kv) Increment(key string, delta int64) (int64, error) {
	kp, kl := str(key)
	kvIncrement(kp, kl, delta, retAddress())
	if err := failure(8); err != nil {
		return 0, err
	}
	return retI64(8), nil
}

// CompareAndSwap writes value only if the key holds expected (nil:
// only if it is absent); whether it wrote.
func (kv) CompareAndSwap(key string, expected []byte, value []byte) (bool, error) {
	kp, kl := str(key)
	var tag, ep, el uint32
	if expected != nil {
		tag = 1
		ep, el = bin(expected)
	}
	vp, vl := bin(value)
	kvCompareAndSwap(kp, kl, tag, ep, el, vp, vl, retAddress())
	if err := failure(4); err != nil {
		return false, err
	}
	return retU8(4) != 0, nil
}

// Page is one page of a listing; Cursor is nil on the last page, else
// what the next call passes.
type Page struct {
	Keys   []string
	Cursor *string
}

func (kv) page() *string {
	if retU8(12) == 0 {
		return nil
	}
	next := text(pointer(retU32(16)), retU32(20))
	return &next
}

// ListKeys lists the keys that begin with prefix, in byte order, a page
// at a time: pass nil, then each page's Cursor.
func (s kv) ListKeys(prefix string, cursor *string) (Page, error) {
	pp, pl := str(prefix)
	ct, cp, cl := optional(cursor)
	kvListKeys(pp, pl, ct, cp, cl, retAddress())
	if err := failure(4); err != nil {
		return Page{}, err
	}
	return Page{Keys: stringList(retU32(4), retU32(8)), Cursor: s.page()}, nil
}

// Entry is a key with its value.
type Entry struct {
	Key   string
	Value []byte
}

// EntryPage is one page of ListEntries.
type EntryPage struct {
	Entries []Entry
	Cursor  *string
}

// ListEntries is ListKeys with the values (a page holds at most 8 MiB).
func (s kv) ListEntries(prefix string, cursor *string) (EntryPage, error) {
	pp, pl := str(prefix)
	ct, cp, cl := optional(cursor)
	kvListEntries(pp, pl, ct, cp, cl, retAddress())
	if err := failure(4); err != nil {
		return EntryPage{}, err
	}
	items := unsafe.Slice((*[4]uint32)(pointer(retU32(4))), retU32(8))
	entries := make([]Entry, len(items))
	for i, item := range items {
		entries[i] = Entry{Key: text(pointer(item[0]), item[1]), Value: bytesAt(item[2], item[3])}
	}
	return EntryPage{Entries: entries, Cursor: s.page()}, nil
}

// GetMany reads up to 1000 keys at once: a value per key, nil when absent.
func (kv) GetMany(keys []string) ([][]byte, error) {
	pairs := make([][2]uint32, len(keys))
	for i, key := range keys {
		pairs[i][0], pairs[i][1] = str(key)
	}
	kvGetMany(address(unsafe.Pointer(unsafe.SliceData(pairs))), uint32(len(keys)), retAddress())
	if err := failure(4); err != nil {
		return nil, err
	}
	items := unsafe.Slice((*[3]uint32)(pointer(retU32(4))), retU32(8))
	values := make([][]byte, len(items))
	for i, item := range items {
		if item[0]&0xff != 0 {
			values[i] = bytesAt(item[1], item[2])
		}
	}
	return values, nil
}
