package upnp

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"
)

// Arg is one named argument of a SOAP action, in or out. Order matters to
// some routers, so arguments travel as an ordered slice, not a map.
type Arg struct {
	Name  string
	Value string
}

// Args is an ordered argument list.
type Args []Arg

// Get returns the value of the first argument called name, and whether it
// was present. Names are compared exactly, as UPnP defines them.
func (a Args) Get(name string) (string, bool) {
	for _, x := range a {
		if x.Name == name {
			return x.Value, true
		}
	}
	return "", false
}

// Value returns the value of the argument called name, or "" when absent.
func (a Args) Value(name string) string {
	v, _ := a.Get(name)
	return v
}

// Error is a UPnPError returned by a device in a SOAP fault. HTTPStatus is
// the status of the HTTP response that carried it: the spec says 500, but
// real routers send 200, 400 or others, and the fault is honoured whatever
// the status.
type Error struct {
	Code        int
	Description string
	HTTPStatus  int
	Action      string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("UPnP error %d", e.Code)
	if e.Description != "" {
		s += " (" + e.Description + ")"
	}
	if e.Action != "" {
		s = e.Action + ": " + s
	}
	return s
}

// StatusError is an answer other than 200 OK that carries no UPnPError:
// an empty HTTP 500 (some routers fault that way), or a page that is not
// SOAP. The refusal is certain; its reason is unknown.
type StatusError struct {
	Action, URL string
	Status      string // "500 Internal Server Error"
	StatusCode  int
	detail      string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("upnp: %s at %s: HTTP %s with no UPnPError%s; the router may not support this action", e.Action, e.URL, e.Status, e.detail)
}

// IsBareFault reports whether err is (or wraps) a *StatusError with
// HTTP 500, the status of a SOAP fault: the router refused without saying
// why. Other statuses (503, 404 ...) are not faults but trouble.
func IsBareFault(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.StatusCode == http.StatusInternalServerError
}

// ErrorCode returns the UPnP error code carried by err, or 0 when err is
// not (and does not wrap) an *Error.
func ErrorCode(err error) int {
	var ue *Error
	if errors.As(err, &ue) {
		return ue.Code
	}
	return 0
}

const (
	soapEnvNS = "http://schemas.xmlsoap.org/soap/envelope/"
	soapEncNS = "http://schemas.xmlsoap.org/soap/encoding/"
	controlNS = "urn:schemas-upnp-org:control-1-0"
)

// DefaultMaxBody bounds how much of a SOAP or description response is read.
// The largest real description in the corpus is under 16 KiB and a full
// PortMappingList of 1,000 entries is under 400 KiB.
const DefaultMaxBody = 4 << 20

// ErrBodyTooLarge is returned when a peer sends more than the allowed body.
var ErrBodyTooLarge = errors.New("upnp: body exceeds size limit")

// AppendEnvelope appends a SOAP 1.1 envelope calling (or answering, when
// action ends in "Response") action of serviceType with args. Every value is
// XML-escaped; the action and argument names are written as they are and
// must be XML names, as every UPnP name is.
func AppendEnvelope(dst []byte, serviceType, action string, args []Arg) []byte {
	dst = append(dst, `<?xml version="1.0"?>`+"\r\n"+
		`<s:Envelope xmlns:s="`+soapEnvNS+`" s:encodingStyle="`+soapEncNS+`"><s:Body><u:`...)
	dst = append(dst, action...)
	dst = append(dst, ` xmlns:u="`...)
	dst = appendEscaped(dst, serviceType)
	dst = append(dst, `">`...)
	for _, a := range args {
		dst = append(dst, '<')
		dst = append(dst, a.Name...)
		dst = append(dst, '>')
		dst = appendEscaped(dst, a.Value)
		dst = append(dst, "</"...)
		dst = append(dst, a.Name...)
		dst = append(dst, '>')
	}
	dst = append(dst, "</u:"...)
	dst = append(dst, action...)
	dst = append(dst, "></s:Body></s:Envelope>\r\n"...)
	return dst
}

// AppendFault appends a SOAP fault envelope carrying a UPnPError.
func AppendFault(dst []byte, code int, description string) []byte {
	dst = append(dst, `<?xml version="1.0"?>`+"\r\n"+
		`<s:Envelope xmlns:s="`+soapEnvNS+`" s:encodingStyle="`+soapEncNS+`"><s:Body><s:Fault>`+
		`<faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>`+
		`<UPnPError xmlns="`+controlNS+`"><errorCode>`...)
	dst = fmt.Appendf(dst, "%d", code)
	dst = append(dst, `</errorCode><errorDescription>`...)
	dst = appendEscaped(dst, description)
	dst = append(dst, "</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>\r\n"...)
	return dst
}

func appendEscaped(dst []byte, s string) []byte {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return append(dst, b.Bytes()...)
}

// ParseEnvelope decodes a SOAP envelope. It returns the local name of the
// first element inside <Body> (the action, or action+"Response") and that
// element's children as arguments, in document order, each value being the
// argument's text with surrounding whitespace trimmed. A <Fault> is returned
// as an *Error when it carries a UPnPError code.
//
// Namespace prefixes are ignored, since routers use s:, SOAP-ENV:, SOAP:,
// m: or none and some leave the arguments un-namespaced. Elements nested
// inside an argument are skipped; an argument holding an XML document
// (GetListOfPortMappings) has it escaped, so it arrives as text. Character
// sets are handled as for descriptions: Latin-1 port mapping descriptions
// are common.
func ParseEnvelope(body []byte) (name string, args Args, err error) {
	d := newDecoder(body)
	depth := 0
	bodyDepth := 0 // depth of <Body> while inside it, else 0
	seenBody := false
	var cur *Arg
	var val strings.Builder // text of the current argument
	argDepth := 0
	var fault *Error
	var faultString string
	var field strings.Builder // text of the fault field being read
	fieldName := ""
	for {
		tok, terr := d.Token()
		if terr == io.EOF {
			break
		}
		if terr != nil {
			return "", nil, fmt.Errorf("upnp: malformed SOAP envelope: %w", terr)
		}
		switch t := tok.(type) {
		case xml.Directive:
			// SOAP forbids a DTD; one that declares entities is an
			// attack, even though encoding/xml would not expand them.
			if hasEntityDecl(t) {
				return "", nil, errors.New("upnp: SOAP envelope declares DTD entities; refusing it")
			}
		case xml.StartElement:
			depth++
			local := t.Name.Local
			switch {
			case bodyDepth == 0:
				if !seenBody && strings.EqualFold(local, "Body") {
					seenBody, bodyDepth = true, depth
				}
			case depth == bodyDepth+1:
				if name == "" {
					name = local
					if local == "Fault" {
						fault = &Error{}
					}
				}
			case fault != nil:
				fieldName = local
				field.Reset()
			case depth == bodyDepth+2 && name != "" && len(args) < maxArgs:
				args = append(args, Arg{Name: local})
				cur, argDepth = &args[len(args)-1], depth
				val.Reset()
			}
		case xml.EndElement:
			switch {
			case cur != nil && depth == argDepth:
				cur.Value = strings.TrimSpace(val.String())
				cur = nil
			case fault != nil && fieldName == t.Name.Local:
				if err := fault.setField(fieldName, field.String(), &faultString); err != nil {
					return "", nil, err
				}
				fieldName = ""
			case depth == bodyDepth:
				bodyDepth = 0
			}
			depth--
		case xml.CharData:
			if cur != nil && depth == argDepth {
				val.Write(t)
			} else if fieldName != "" {
				field.Write(t)
			}
		}
		if name != "" && depth == bodyDepth {
			// The first element of Body is complete; anything after it
			// is not part of the answer.
			break
		}
	}
	if name == "" {
		return "", nil, errors.New("upnp: SOAP envelope has no element inside its Body")
	}
	if fault != nil {
		if fault.Code == 0 {
			if faultString != "" {
				return name, nil, fmt.Errorf("upnp: SOAP fault %q without a UPnPError code", faultString)
			}
			return name, nil, errors.New("upnp: SOAP fault without a UPnPError code")
		}
		return name, nil, fault
	}
	return name, args, nil
}

// maxArgs bounds the arguments kept from one envelope; no UPnP action has
// more than a dozen, and a hostile peer should not make us allocate more.
const maxArgs = 64

// setField records one text field of a SOAP fault.
func (e *Error) setField(name, text string, faultString *string) error {
	text = strings.TrimSpace(text)
	switch name {
	case "errorCode":
		n, err := strconv.Atoi(text)
		if err != nil {
			return fmt.Errorf("upnp: SOAP fault with non-numeric errorCode %q", text)
		}
		e.Code = n
	case "errorDescription":
		e.Description = text
	case "faultstring":
		*faultString = text
	}
	return nil
}

// Client calls SOAP actions on UPnP devices. The zero value is usable.
type Client struct {
	// HTTP is the client used for requests; nil means a private client with
	// no proxy (a router on the LAN must never be reached through one).
	HTTP *http.Client
	// Timeout bounds each request when the context has no earlier deadline.
	// Zero means 5 seconds.
	Timeout time.Duration
	// MaxBody bounds the response body; zero means DefaultMaxBody.
	MaxBody int64
	// UserAgent is sent as User-Agent; empty means "portfwd".
	UserAgent string
}

// Call invokes action of serviceType at controlURL. It sends a quoted
// SOAPAction header and a Content-Length (never chunked: many routers cannot
// read chunked requests). A UPnPError fault in the reply is returned as an
// *Error whatever the HTTP status.
func (c *Client) Call(ctx context.Context, controlURL, serviceType, action string, args []Arg) (Args, error) {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body := AppendEnvelope(make([]byte, 0, 512), serviceType, action, args)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, controlURL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("upnp: %s: %w", action, err)
	}
	// Set directly, not through Header.Set, so that the case is preserved:
	// some routers match header names case-sensitively.
	req.Header["SOAPAction"] = []string{`"` + serviceType + "#" + action + `"`}
	req.Header["Content-Type"] = []string{`text/xml; charset="utf-8"`}
	ua := c.UserAgent
	if ua == "" {
		ua = "portfwd"
	}
	req.Header["User-Agent"] = []string{ua}
	resp, err := do(c.HTTP, req)
	if err != nil {
		return nil, fmt.Errorf("upnp: %s at %s: %w", action, controlURL, err)
	}
	defer resp.Body.Close()
	max := c.MaxBody
	if max == 0 {
		max = DefaultMaxBody
	}
	data, err := ReadLimited(resp.Body, max)
	if err != nil {
		return nil, fmt.Errorf("upnp: %s: reading response: %w", action, err)
	}
	name, out, perr := ParseEnvelope(data)
	var ue *Error
	if errors.As(perr, &ue) {
		ue.HTTPStatus = resp.StatusCode
		ue.Action = action
		return nil, ue
	}
	if resp.StatusCode != http.StatusOK {
		detail := ""
		if perr != nil {
			detail = " (" + perr.Error() + ")"
		}
		return nil, &StatusError{Action: action, URL: controlURL, Status: resp.Status, StatusCode: resp.StatusCode, detail: detail}
	}
	if perr != nil {
		return nil, fmt.Errorf("upnp: %s at %s: bad response: %w", action, controlURL, perr)
	}
	if !strings.EqualFold(name, action+"Response") {
		return nil, fmt.Errorf("upnp: %s at %s: router answered with <%s>, not <%sResponse>", action, controlURL, name, action)
	}
	return out, nil
}

// ReadLimited reads r to the end, failing with ErrBodyTooLarge past max bytes.
func ReadLimited(r io.Reader, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, ErrBodyTooLarge
	}
	return data, nil
}
