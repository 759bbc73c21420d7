// echo-go sends every message back to its sender, text as text and binary
// as binary. A core module built for wasip1: the gateway wraps it into a
// component. `cargo xtask build-plugins` builds it with build.sh; see
// docs/languages/go.md.
//
// A text message that begins with `/` is a command that shows the helper's
// key-value store and groups instead: `/count` (a counter of the service),
// `/join GROUP`, `/say GROUP TEXT` (to the group but the sender),
// `/members GROUP` (how many), `/value KEY` (sets it to `1`, reads it
// back, deletes it), `/panic` (the handler panics: the call fails with the
// panic's text, and the gateway closes the connection with 1011).
package main

import (
	"errors"
	"fmt"
	"strings"

	wasmgate "github.com/wasmgate/wasmgate/guest-sdk/go"
)

func init() {
	wasmgate.Serve(wasmgate.Handler{Transfer: transfer})
}

func transfer(ctx *wasmgate.Context, event *wasmgate.DataSend) error {
	message := event.Message()
	if !message.Binary && strings.HasPrefix(string(message.Data), "/") {
		reply, err := command(ctx, string(message.Data))
		var gatewayErr *wasmgate.Error
		if errors.As(err, &gatewayErr) {
			reply = fmt.Sprintf("result:%d", gatewayErr.ErrNo)
		} else if err != nil {
			return err
		}
		return wasmgate.Push(ctx.ConnectionID, wasmgate.Text(reply))
	}
	return wasmgate.Push(ctx.ConnectionID, message)
}

func command(ctx *wasmgate.Context, text string) (string, error) {
	name, rest, _ := strings.Cut(text[1:], " ")
	switch name {
	case "count":
		n, err := wasmgate.KV.Increment("count", 1)
		return fmt.Sprintf("count %d", n), err
	case "join":
		return "joined " + rest, wasmgate.Groups.Join(rest, ctx.ConnectionID)
	case "say":
		group, words, ok := strings.Cut(rest, " ")
		if !ok {
			return "usage: /say GROUP TEXT", nil
		}
		n, err := wasmgate.Groups.Broadcast(group, wasmgate.Text(words), ctx.ConnectionID)
		return fmt.Sprintf("delivered %d", n), err
	case "members":
		members, err := wasmgate.Groups.Members(rest)
		return fmt.Sprint(len(members)), err
	case "panic":
		panic("asked to panic")
	case "value":
		if err := wasmgate.KV.Set(rest, []byte("1"), 0); err != nil {
			return "", err
		}
		value, ok, err := wasmgate.KV.Get(rest)
		if err != nil {
			return "", err
		}
		if !ok {
			value = []byte("absent")
		}
		deleted, err := wasmgate.KV.Delete(rest)
		return fmt.Sprintf("%s=%s deleted=%t", rest, value, deleted), err
	}
	return "unknown command", nil
}

func main() {}
