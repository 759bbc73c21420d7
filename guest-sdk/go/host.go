package wasmgate

import (
	"fmt"
	"unsafe"
)

// Error is a host call's failure: the gateway's errNo and errMsg, the
// numbers of the reverse-push endpoint (docs/protocol.md).
type Error struct {
	ErrNo  int32
	ErrMsg string
}

func (e *Error) Error() string {
	return fmt.Sprintf("errNo %d: %s", e.ErrNo, e.ErrMsg)
}

// ret is the area where the gateway writes a host call's result: 24 bytes,
// 8-aligned (the most any result of the world needs).
var ret [3]uint64

// retAddress is the result area for a host call about to be made; what
// earlier calls handed back was copied out and is let go.
func retAddress() uint32 {
	release()
	return address(unsafe.Pointer(&ret))
}

func retU8(offset uintptr) uint8 {
	return *(*uint8)(unsafe.Add(unsafe.Pointer(&ret), offset))
}

func retU32(offset uintptr) uint32 {
	return *(*uint32)(unsafe.Add(unsafe.Pointer(&ret), offset))
}

func retI64(offset uintptr) int64 {
	return *(*int64)(unsafe.Add(unsafe.Pointer(&ret), offset))
}

// failure reads the result's error case, whose errNo is at offset (4, or 8
// for a result with an 8-aligned payload); nil when the tag says ok.
func failure(offset uintptr) error {
	if retU8(0) == 0 {
		return nil
	}
	return &Error{
		ErrNo:  int32(retU32(offset)),
		ErrMsg: string(bytesAt(retU32(offset+4), retU32(offset+8))),
	}
}

// str is a string as the canonical ABI passes it: pointer and length.
func str(s string) (uint32, uint32) {
	return address(unsafe.Pointer(unsafe.StringData(s))), uint32(len(s))
}

// bin is a byte list as the canonical ABI passes it.
func bin(b []byte) (uint32, uint32) {
	return address(unsafe.Pointer(unsafe.SliceData(b))), uint32(len(b))
}

// optional is option<string>: a tag, then the string (zeros when none).
func optional(s *string) (uint32, uint32, uint32) {
	if s == nil {
		return 0, 0, 0
	}
	p, n := str(*s)
	return 1, p, n
}

// stringList reads a list<string> at ptr: count (pointer, length) pairs.
func stringList(ptr, count uint32) []string {
	pairs := unsafe.Slice((*[2]uint32)(pointer(ptr)), count)
	out := make([]string, count)
	for i, pair := range pairs {
		out[i] = text(pointer(pair[0]), pair[1])
	}
	return out
}

//go:wasmimport wasmgate:gateway/host@0.1.0 push
func hostPush(idPtr, idLen, tag, dataPtr, dataLen, ret uint32)

//go:wasmimport wasmgate:gateway/host@0.1.0 close
func hostClose(idPtr, idLen, ret uint32)

//go:wasmimport wasmgate:gateway/host@0.1.0 route
func hostRoute(jsonPtr, jsonLen, ret uint32)

//go:wasmimport wasmgate:gateway/host@0.1.0 log
func hostLog(level, textPtr, textLen uint32)

//go:wasmimport wasmgate:gateway/host@0.1.0 set-attributes
func hostSetAttributes(jsonPtr, jsonLen, ret uint32)

// Message is one WebSocket message: text, or binary when Binary is set.
type Message struct {
	Binary bool
	Data   []byte
}

// Text is a text message.
func Text(s string) Message { return Message{Data: []byte(s)} }

// Binary is a binary message.
func Binary(b []byte) Message { return Message{Binary: true, Data: b} }

func (m Message) tag() uint32 {
	if m.Binary {
		return 1
	}
	return 0
}

// Push queues a message for connection id of this service.
func Push(id string, message Message) error {
	ip, il := str(id)
	dp, dl := bin(message.Data)
	hostPush(ip, il, message.tag(), dp, dl, retAddress())
	return failure(4)
}

// Close asks connection id of this service to close; its cleanup then runs.
func Close(id string) error {
	ip, il := str(id)
	hostClose(ip, il, retAddress())
	return failure(4)
}

// Route hands a reverse-push request (JSON, as POST /push/<service> takes
// it) to the gateway's routing function.
func Route(requestJSON string) error {
	p, n := str(requestJSON)
	hostRoute(p, n, retAddress())
	return failure(4)
}

// Level is a log line's level.
type Level uint32

// The log levels.
const (
	Trace Level = iota
	Debug
	Info
	Warn
	Err
)

// Log writes a line to the gateway's log, with the service and call.
func Log(level Level, text string) {
	p, n := str(text)
	hostLog(uint32(level), p, n)
}

// SetAttributes replaces this connection's attributes: a JSON object of at
// most 4096 bytes, sent with every later event of the connection.
func SetAttributes(attributes map[string]any) error {
	json, err := marshal(attributes)
	if err != nil {
		return err
	}
	p, n := str(json)
	hostSetAttributes(p, n, retAddress())
	return failure(4)
}
