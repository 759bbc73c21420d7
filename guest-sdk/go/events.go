package wasmgate

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// Role is what a call is for.
type Role uint32

// The roles of the world, in its order.
const (
	RoleRegister Role = iota
	RoleTransfer
	RoleCleanup
	// RoleHTTP is a request to /http/<service>/<path…> (the HTTP trigger).
	RoleHTTP
	// RoleTimer is a tick of one of the service's [[timers]].
	RoleTimer
)

// Context is what the gateway tells a handler about the call, besides the
// event.
type Context struct {
	// Service is the service (plugin folder name) this handler belongs to.
	Service string
	// Role is the role the handler is called in.
	Role Role
	// RequestID names this call; the gateway tags its log lines with it.
	RequestID string
	// ConnectionID is the connection the event is about.
	ConnectionID string
	// DeadlineMs is when the call is stopped, in milliseconds since the
	// Unix epoch.
	DeadlineMs uint64
}

// RequestContext is where a connecting client came from and what it
// addressed.
type RequestContext struct {
	ServiceName string `json:"serviceName"`
	Path        string `json:"path"`
	HTTPMethod  string `json:"httpMethod"`
	RequestID   string `json:"requestId"`
	SourceIP    string `json:"sourceIp"`
	Stage       string `json:"stage"`
}

// Connecting is the event of register: a client asks to connect.
type Connecting struct {
	RequestContext RequestContext `json:"requestContext"`
	WebSocket      struct {
		Action                 string `json:"action"`
		SecConnectionID        string `json:"secConnectionID"`
		SecWebSocketProtocol   string `json:"secWebSocketProtocol"`
		SecWebSocketExtensions string `json:"secWebSocketExtensions"`
	} `json:"websocket"`
	// Headers are the upgrade request's headers, names in lower case.
	Headers map[string]string `json:"headers"`
	// QueryString holds the upgrade request's query parameters.
	QueryString map[string]string `json:"queryString"`
}

// Header is a header of the upgrade request, its name matched in any case.
func (e *Connecting) Header(name string) string {
	return e.Headers[strings.ToLower(name)]
}

// Protocols are the sub-protocols the client offered, in its order.
func (e *Connecting) Protocols() []string {
	var out []string
	for _, p := range strings.Split(e.WebSocket.SecWebSocketProtocol, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// DataSend is the event of transfer: a client sent a message.
type DataSend struct {
	// Attributes are the connection's attributes (see Registration),
	// nil when none are set.
	Attributes map[string]any `json:"attributes"`
	WebSocket  struct {
		Action          string `json:"action"`
		SecConnectionID string `json:"secConnectionID"`
		// DataType is "text" or "binary".
		DataType string `json:"dataType"`
		// Data is the text, or the bytes in standard Base64.
		Data string `json:"data"`
	} `json:"websocket"`
	message Message
}

// Message is the message the client sent, binary data decoded.
func (e *DataSend) Message() Message { return e.message }

// Closing is the event of cleanup: a connection ended.
type Closing struct {
	// Attributes are the connection's last attributes.
	Attributes map[string]any `json:"attributes"`
	WebSocket  struct {
		Action          string `json:"action"`
		SecConnectionID string `json:"secConnectionID"`
		// CloseReason is client, server, idle, error, shutdown or
		// node_lost.
		CloseReason string `json:"closeReason"`
		// CloseCode is the code of the client's close frame, if it sent one.
		CloseCode *int `json:"closeCode"`
	} `json:"websocket"`
}

// Registration is register's answer: accept, perhaps with a sub-protocol
// and attributes, or refuse with the handler's own numbers.
type Registration struct {
	ErrNo      int32
	ErrMsg     string
	Protocol   string
	Attributes map[string]any
}

// Accept lets the client connect.
func Accept() Registration { return Registration{ErrMsg: "ok"} }

// AcceptProtocol lets the client connect with one of the sub-protocols it
// offered.
func AcceptProtocol(protocol string) Registration {
	return Registration{ErrMsg: "ok", Protocol: protocol}
}

// Refuse turns the client away: it gets HTTP 403 with errNo and errMsg.
// errNo must not be 0.
func Refuse(errNo int32, errMsg string) Registration {
	return Registration{ErrNo: errNo, ErrMsg: errMsg}
}

// WithAttributes keeps attributes (a JSON object of at most 4096 bytes)
// with the connection; every later event of it carries them.
func (r Registration) WithAttributes(attributes map[string]any) Registration {
	r.Attributes = attributes
	return r
}

func (r Registration) json(connectionID string) (string, error) {
	type websocket struct {
		Action               string `json:"action"`
		SecConnectionID      string `json:"secConnectionID"`
		SecWebSocketProtocol string `json:"secWebSocketProtocol,omitempty"`
	}
	return marshal(struct {
		ErrNo      int32          `json:"errNo"`
		ErrMsg     string         `json:"errMsg"`
		WebSocket  websocket      `json:"websocket"`
		Attributes map[string]any `json:"attributes,omitempty"`
	}{r.ErrNo, r.ErrMsg, websocket{"connecting", connectionID, r.Protocol}, r.Attributes})
}

// Handler holds a service's handlers, one per role; a nil one does
// nothing (register then accepts).
type Handler struct {
	Register func(ctx *Context, event *Connecting) (Registration, error)
	Transfer func(ctx *Context, event *DataSend) error
	Cleanup  func(ctx *Context, event *Closing) error
	// HTTP answers requests to /http/<service>/<path…>; without it they
	// get 501 with errNo 2603.
	HTTP func(ctx *Context, request *HTTPRequest) (HTTPResponse, error)
	// Timer runs at each tick of the service's [[timers]].
	Timer func(ctx *Context, event *TimerEvent) error
}

var handler Handler

// Serve sets the handler of this module; call it from an init function.
func Serve(h Handler) { handler = h }

// dispatch runs the handler for ctx.Role; a panic is an error of the call.
func dispatch(ctx *Context, event string) (answer string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	switch ctx.Role {
	case RoleRegister:
		r := Accept()
		if handler.Register != nil {
			var e Connecting
			if err := json.Unmarshal([]byte(event), &e); err != nil {
				return "", fmt.Errorf("connecting event: %w", err)
			}
			if r, err = handler.Register(ctx, &e); err != nil {
				return "", err
			}
		}
		return r.json(ctx.ConnectionID)
	case RoleTransfer:
		if handler.Transfer != nil {
			var e DataSend
			if err := json.Unmarshal([]byte(event), &e); err != nil {
				return "", fmt.Errorf("data send event: %w", err)
			}
			e.message = Message{Data: []byte(e.WebSocket.Data)}
			if e.WebSocket.DataType == "binary" {
				data, err := base64.StdEncoding.DecodeString(e.WebSocket.Data)
				if err != nil {
					return "", fmt.Errorf("data send event: binary data: %w", err)
				}
				e.message = Binary(data)
			}
			if err := handler.Transfer(ctx, &e); err != nil {
				return "", err
			}
		}
		return "{}", nil
	case RoleCleanup:
		if handler.Cleanup != nil {
			var e Closing
			if err := json.Unmarshal([]byte(event), &e); err != nil {
				return "", fmt.Errorf("closing event: %w", err)
			}
			if err := handler.Cleanup(ctx, &e); err != nil {
				return "", err
			}
		}
		return "{}", nil
	case RoleHTTP:
		if handler.HTTP == nil {
			return NotHandled().json()
		}
		var r HTTPRequest
		if err := json.Unmarshal([]byte(event), &r); err != nil {
			return "", fmt.Errorf("http event: %w", err)
		}
		answer, err := handler.HTTP(ctx, &r)
		if err != nil {
			return "", err
		}
		return answer.json()
	case RoleTimer:
		if handler.Timer != nil {
			var e TimerEvent
			if err := json.Unmarshal([]byte(event), &e); err != nil {
				return "", fmt.Errorf("timer event: %w", err)
			}
			if err := handler.Timer(ctx, &e); err != nil {
				return "", err
			}
		}
		return "{}", nil
	}
	return "", fmt.Errorf("role %d is not handled by this module", ctx.Role)
}

func marshal(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
