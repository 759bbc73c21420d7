package wasmgate

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// HTTPRequestContext is where an HTTP request came from and what it
// addressed.
type HTTPRequestContext struct {
	// ServiceID is the service addressed.
	ServiceID string `json:"serviceId"`
	// Path is the route template the path matched (/rooms/{room}), else
	// the path.
	Path       string `json:"path"`
	HTTPMethod string `json:"httpMethod"`
	RequestID  string `json:"requestId"`
	SourceIP   string `json:"sourceIp"`
	// Stage is always "release".
	Stage string `json:"stage"`
}

// QueryValue is a query parameter's values, in order: a key given once has
// one, a repeated key several.
type QueryValue []string

// UnmarshalJSON reads a value given once (a string) or a repeated one (a
// list).
func (q *QueryValue) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*q = QueryValue{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*q = many
	return nil
}

// HTTPRequest is the HTTP trigger's event, the model's integration request:
// a request to /http/<service>/<path…>.
type HTTPRequest struct {
	RequestContext HTTPRequestContext `json:"requestContext"`
	// Headers are the request's headers, names in lower case, a repeated
	// header's values joined with ", ".
	Headers map[string]string `json:"headers"`
	// Body is the body: text, or Base64 when IsBase64Encoded (the body was
	// not UTF-8). BodyBytes decodes it.
	Body            string `json:"body"`
	IsBase64Encoded bool   `json:"isBase64Encoded"`
	// PathParameters are the parameters of the route template the path
	// matched (service.toml's routes).
	PathParameters map[string]string `json:"pathParameters"`
	// QueryString holds the query parameters, percent-decoded.
	QueryString map[string]QueryValue `json:"queryString"`
	// Path is the path below /http/<service>, beginning with /.
	Path       string `json:"path"`
	HTTPMethod string `json:"httpMethod"`
}

// Header is a request header, its name matched in any case.
func (r *HTTPRequest) Header(name string) string {
	return r.Headers[strings.ToLower(name)]
}

// Query is a query parameter's first value, "" when absent.
func (r *HTTPRequest) Query(name string) string {
	if values := r.QueryString[name]; len(values) > 0 {
		return values[0]
	}
	return ""
}

// QueryAll is every value of a query parameter, in order.
func (r *HTTPRequest) QueryAll(name string) []string {
	return r.QueryString[name]
}

// PathParameter is a parameter of the matched route template.
func (r *HTTPRequest) PathParameter(name string) string {
	return r.PathParameters[name]
}

// BodyBytes is the body, Base64 decoded when it came so.
func (r *HTTPRequest) BodyBytes() ([]byte, error) {
	if r.IsBase64Encoded {
		return base64.StdEncoding.DecodeString(r.Body)
	}
	return []byte(r.Body), nil
}

// HTTPResponse is the answer to an HTTP request, the model's integration
// response.
type HTTPResponse struct {
	// StatusCode is the status, 200 to 599.
	StatusCode int
	// Headers are the answer's headers; a name with several values is sent
	// as that many headers.
	Headers map[string][]string
	// Body is the body. A body that is not UTF-8 is sent Base64-encoded,
	// and the gateway decodes it.
	Body []byte
}

// HTTPText is a text answer, text/plain; charset=utf-8.
func HTTPText(status int, text string) HTTPResponse {
	return HTTPResponse{
		StatusCode: status,
		Headers:    map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}},
		Body:       []byte(text),
	}
}

// HTTPJSON is a JSON answer, application/json.
func HTTPJSON(status int, v any) (HTTPResponse, error) {
	body, err := json.Marshal(v)
	return HTTPResponse{
		StatusCode: status,
		Headers:    map[string][]string{"Content-Type": {"application/json"}},
		Body:       body,
	}, err
}

// NotHandled is the answer of a handler without HTTP: 501 with errNo 2603,
// as the gateway answers for a handler built before the http role.
func NotHandled() HTTPResponse {
	return HTTPResponse{
		StatusCode: 501,
		Headers:    map[string][]string{"Content-Type": {"application/json"}},
		Body:       []byte(`{"errNo":2603,"errMsg":"the service does not handle HTTP requests"}`),
	}
}

// AddHeader adds a header value; adding a name again makes it a repeated
// header.
func (r *HTTPResponse) AddHeader(name, value string) {
	if r.Headers == nil {
		r.Headers = map[string][]string{}
	}
	r.Headers[name] = append(r.Headers[name], value)
}

func (r HTTPResponse) json() (string, error) {
	headers := make(map[string]any, len(r.Headers))
	for name, values := range r.Headers {
		if len(values) == 1 {
			headers[name] = values[0]
		} else {
			headers[name] = values
		}
	}
	binary := !utf8.Valid(r.Body)
	body := string(r.Body)
	if binary {
		body = base64.StdEncoding.EncodeToString(r.Body)
	}
	return marshal(struct {
		IsBase64Encoded bool           `json:"isBase64Encoded"`
		StatusCode      int            `json:"statusCode"`
		Headers         map[string]any `json:"headers"`
		Body            string         `json:"body"`
	}{binary, r.StatusCode, headers, body})
}

// TimerEvent is the timer trigger's event: a timer of the service's
// service.toml fired.
type TimerEvent struct {
	// Type is always "Timer".
	Type string `json:"Type"`
	// TriggerName is the timer's name.
	TriggerName string `json:"TriggerName"`
	// Time is the tick's scheduled time, UTC, as 2019-02-21T11:49:00Z.
	Time string `json:"Time"`
	// Message is the timer's message, "" when it has none.
	Message string `json:"Message"`
}
