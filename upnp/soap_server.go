package upnp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	http "github.com/portfwd/portfwd/internal/httpx"
)

// UPnP error codes a control point can get wrong regardless of the service.
const (
	codeInvalidAction = 401
	codeInvalidArgs   = 402
)

// ReadRequest reads a SOAP control request on the device side. The action
// comes from the SOAPAction header ("urn:...:service:X:1#Action", quoted or
// not) and must match the element inside the body; args are that element's
// children. A body over maxBody bytes (zero means DefaultMaxBody) fails with
// ErrBodyTooLarge.
//
// When the request names no action, or a different one in the header and
// the body, the error wraps an *Error with code 401 (Invalid Action), so
// ErrorCode tells the caller what fault to send with WriteFault. Other
// errors mean the request was not SOAP at all and deserve an HTTP 400.
func ReadRequest(r *http.Request, maxBody int64) (serviceType, action string, args Args, err error) {
	if r.Method != http.MethodPost {
		return "", "", nil, fmt.Errorf("upnp: SOAP request uses method %s, not POST", r.Method)
	}
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	if r.ContentLength > maxBody {
		return "", "", nil, fmt.Errorf("upnp: SOAP request of %d bytes: %w", r.ContentLength, ErrBodyTooLarge)
	}
	serviceType, action, herr := parseSOAPAction(r.Header.Get("SOAPAction"))
	data, err := ReadLimited(r.Body, maxBody)
	if err != nil {
		return "", "", nil, fmt.Errorf("upnp: reading SOAP request: %w", err)
	}
	if herr != nil {
		return "", "", nil, fmt.Errorf("upnp: %w: %w", herr, &Error{Code: codeInvalidAction, Description: "Invalid Action"})
	}
	name, args, err := ParseEnvelope(data)
	if err != nil {
		if ErrorCode(err) != 0 {
			// A fault is an answer, not a request.
			return "", "", nil, fmt.Errorf("upnp: SOAP request body is a fault (%v)", err)
		}
		return "", "", nil, err
	}
	if name != action {
		return "", "", nil, fmt.Errorf("upnp: SOAPAction header names %q but the body calls %q: %w", action, name, &Error{Code: codeInvalidAction, Description: "Invalid Action"})
	}
	return serviceType, action, args, nil
}

// parseSOAPAction splits a SOAPAction header value into service type and
// action. Control points differ on quoting, so quotes are optional.
func parseSOAPAction(h string) (serviceType, action string, err error) {
	h = strings.TrimSpace(h)
	if len(h) >= 2 && h[0] == '"' && h[len(h)-1] == '"' {
		h = strings.TrimSpace(h[1 : len(h)-1])
	}
	if h == "" {
		return "", "", errors.New("request has no SOAPAction header")
	}
	i := strings.LastIndexByte(h, '#')
	if i <= 0 || i == len(h)-1 {
		return "", "", fmt.Errorf("SOAPAction %q is not of the form service-type#action", h)
	}
	return h[:i], h[i+1:], nil
}

// WriteResponse answers a SOAP request successfully: HTTP 200 with an
// actionResponse element (action is the name of the action called;
// "Response" is appended) holding out.
func WriteResponse(w http.ResponseWriter, serviceType, action string, out []Arg) {
	writeSOAP(w, http.StatusOK, AppendEnvelope(make([]byte, 0, 512), serviceType, action+"Response", out))
}

// WriteFault answers a SOAP request with a UPnPError fault, sent with
// HTTP 500 as UDA requires.
func WriteFault(w http.ResponseWriter, code int, description string) {
	writeSOAP(w, http.StatusInternalServerError, AppendFault(make([]byte, 0, 512), code, description))
}

// writeSOAP sends body with an explicit Content-Length: control points on
// small devices often cannot read a chunked response.
func writeSOAP(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", `text/xml; charset="utf-8"`)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	// A write error means the control point went away; there is nobody
	// left to tell.
	_, _ = w.Write(body)
}
