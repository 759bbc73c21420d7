// Package wasmgate writes wasmgate WebSocket handlers in Go.
//
// A handler is a core module built with GOOS=wasip1 GOARCH=wasm
// -buildmode=c-shared; the gateway wraps it into a component of the
// wasmgate:gateway/handler world (with the WASI preview-1 adapter) when it
// loads it. The package exports what the world needs (handle, cabi_realloc,
// cabi_post_handle) and calls the handler given to [Serve]:
//
//	package main
//
//	import wasmgate "github.com/wasmgate/wasmgate/guest-sdk/go"
//
//	func init() {
//		wasmgate.Serve(wasmgate.Handler{
//			Transfer: func(ctx *wasmgate.Context, event *wasmgate.DataSend) error {
//				return wasmgate.Push(ctx.ConnectionID, event.Message())
//			},
//		})
//	}
//
//	func main() {}
//
// # Memory
//
// The gateway copies strings in (the event, a host call's results) through
// cabi_realloc, and a component may call no import while it does. Go's
// collector asks WASI for the time when it starts, so the package turns the
// automatic collector off (the handler's instance usually lives for one
// event) and collects itself at the end of a call, where imports are
// allowed: every 64 calls of an instance, or sooner after 4 MiB came in.
// A handler that allocates a lot in one call may call runtime.GC itself.
//
// The WASI preview-1 adapter keeps its state and stack in the module's
// memory. Go's heap assumes it alone grows linear memory, so the package
// reserves 256 KiB in Go's data for the adapter (adapterMemory), which the
// gateway's wrapper finds and hands to it; events and host-call results up
// to the service's max_message_bytes come in whole, and an instance may be
// reused for any number of events (docs/languages/go.md).
package wasmgate

import (
	"runtime"
	"runtime/debug"
	"unsafe"
)

func init() {
	// No collection may start inside cabi_realloc (see the package doc),
	// and no allocation profiling either.
	debug.SetGCPercent(-1)
	runtime.MemProfileRate = 0
	// The area is only ever used from outside Go: keep it in the module.
	adapterMemoryAt = unsafe.Pointer(&adapterMemory)
}

// adapterMemoryAt refers to adapterMemory, so the linker keeps it.
var adapterMemoryAt unsafe.Pointer

// adapterMemory is where the WASI preview-1 adapter keeps its state and
// stack. The gateway's wrapper finds it by the text it begins with (which
// gives its size in bytes) and allocates the adapter's memory in it, since
// memory taken with memory.grow would be claimed again by Go's heap, which
// assumes it alone grows linear memory. It lies in Go's data, which the
// heap never hands out, and Go itself never touches it.
var adapterMemory = [adapterMemorySize]byte{
	'w', 'a', 's', 'm', 'g', 'a', 't', 'e', ':', 'a', 'd', 'a', 'p', 't', 'e', 'r',
	'-', 'm', 'e', 'm', 'o', 'r', 'y', ':', '2', '6', '2', '1', '4', '4', ';',
}

// adapterMemorySize is the size of adapterMemory, as its text gives it: a
// 64 KiB stack, the adapter's state (under 64 KiB), room to spare.
const adapterMemorySize = 256 << 10

// held keeps what the gateway copied in (the event before a call, a host
// call's results during it) alive until it has been copied out into
// ordinary Go values, which happens at once.
var held [][]uint64

// heldBytes counts what came in since the last collection.
var heldBytes int

// calls counts the calls of this instance.
var calls int

// zero is where empty allocations point.
var zero uint64

// cabiRealloc allocates memory for the gateway. Pure memory work: it calls
// no import (the automatic collector is off).
//
//go:wasmexport cabi_realloc
func cabiRealloc(old unsafe.Pointer, oldSize, align, newSize uint32) unsafe.Pointer {
	if newSize == 0 {
		return unsafe.Pointer(&zero)
	}
	// Words: 8-byte alignment, the most the canonical ABI asks for.
	block := make([]uint64, (newSize+7)/8)
	held = append(held, block)
	heldBytes += int(newSize)
	if old != nil && oldSize > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&block[0])), newSize),
			unsafe.Slice((*byte)(old), min(oldSize, newSize)))
	}
	return unsafe.Pointer(&block[0])
}

// release lets go of what the gateway copied in before: it has been
// copied out.
func release() {
	clear(held)
	held = held[:0]
}

// answer is this call's answer, kept until the gateway has read it.
var answer string

// result is result<string, string> as handle returns it: a tag byte (0 ok,
// 1 error), then the string's pointer and length.
var result [3]uint32

//go:wasmexport handle
func handle(servicePtr unsafe.Pointer, serviceLen uint32, role uint32,
	requestPtr unsafe.Pointer, requestLen uint32,
	connectionPtr unsafe.Pointer, connectionLen uint32,
	deadlineMs int64, eventPtr unsafe.Pointer, eventLen uint32) unsafe.Pointer {
	// Copied out, then let go.
	ctx := &Context{
		Service:      text(servicePtr, serviceLen),
		Role:         Role(role),
		RequestID:    text(requestPtr, requestLen),
		ConnectionID: text(connectionPtr, connectionLen),
		DeadlineMs:   uint64(deadlineMs),
	}
	event := text(eventPtr, eventLen)
	release()
	out, err := dispatch(ctx, event)
	if err != nil {
		result[0], answer = 1, err.Error()
	} else {
		result[0], answer = 0, out
	}
	result[1] = address(unsafe.Pointer(unsafe.StringData(answer)))
	result[2] = uint32(len(answer))
	release()
	calls++
	if calls%64 == 0 || heldBytes > 4<<20 {
		heldBytes = 0
		runtime.GC()
	}
	return unsafe.Pointer(&result)
}

// cabiPostHandle lets the answer go once the gateway has read it. Pure
// memory work.
//
//go:wasmexport cabi_post_handle
func cabiPostHandle(unsafe.Pointer) {
	answer = ""
}

// text copies out the string the gateway copied in at ptr.
func text(ptr unsafe.Pointer, n uint32) string {
	if n == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(ptr), n))
}

// bytesAt copies out the byte list the gateway copied in at ptr.
func bytesAt(ptr uint32, n uint32) []byte {
	if n == 0 {
		return []byte{}
	}
	return append([]byte(nil), unsafe.Slice((*byte)(pointer(ptr)), n)...)
}

// address is a pointer as the canonical ABI passes it.
func address(p unsafe.Pointer) uint32 {
	return uint32(uintptr(p))
}

// pointer is an address of linear memory the gateway handed back.
func pointer(a uint32) unsafe.Pointer {
	return unsafe.Add(unsafe.Pointer(nil), uintptr(a))
}
