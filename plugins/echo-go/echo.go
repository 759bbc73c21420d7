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
//
// Over HTTP (/http/<service>/…): `POST /say/GROUP` broadcasts the body's
// text to the group's WebSocket clients and answers {"delivered": N};
// any other request gets its own body back, with its path in X-Echo-Path
// and each `q` query value in a repeated X-Query header. A timer of the
// service's service.toml broadcasts `tick NAME TIME MESSAGE` to the group
// `ticks`.
package main

import (
	"errors"
	"fmt"
	"strings"

	wasmgate "github.com/wasmgate/wasmgate/guest-sdk/go"
)

func init() {
	wasmgate.Serve(wasmgate.Handler{Transfer: transfer, HTTP: http, Timer: timer})
}

func http(ctx *wasmgate.Context, request *wasmgate.HTTPRequest) (wasmgate.HTTPResponse, error) {
	body, err := request.BodyBytes()
	if err != nil {
		return wasmgate.HTTPText(400, "body: "+err.Error()), nil
	}
	if group, ok := strings.CutPrefix(request.Path, "/say/"); ok && request.HTTPMethod == "POST" {
		delivered, err := wasmgate.Groups.Broadcast(group, wasmgate.Text(string(body)), "")
		if err != nil {
			return wasmgate.HTTPResponse{}, err
		}
		return wasmgate.HTTPJSON(200, map[string]uint32{"delivered": delivered})
	}
	answer := wasmgate.HTTPResponse{StatusCode: 200, Body: body}
	answer.AddHeader("Content-Type", "application/octet-stream")
	answer.AddHeader("X-Echo-Path", request.Path)
	for _, value := range request.QueryAll("q") {
		answer.AddHeader("X-Query", value)
	}
	return answer, nil
}

func timer(ctx *wasmgate.Context, event *wasmgate.TimerEvent) error {
	tick := fmt.Sprintf("tick %s %s %s", event.TriggerName, event.Time, event.Message)
	_, err := wasmgate.Groups.Broadcast("ticks", wasmgate.Text(tick), "")
	return err
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
