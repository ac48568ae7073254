package upnp

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"
)

// DeviceNamespace is the XML namespace of a UPnP root device description.
const DeviceNamespace = "urn:schemas-upnp-org:device-1-0"

// MaxDescriptionSize bounds a root device description. The largest real one
// in the corpus is under 16 KiB; anything near a megabyte is not a router.
const MaxDescriptionSize = 1 << 20

// fetchTimeout bounds FetchDescription when the context has no deadline.
const fetchTimeout = 10 * time.Second

// Root is a UPnP root device description (the document at the LOCATION an
// SSDP reply points to). The same type is parsed by clients and rendered by
// the gateway with Marshal.
type Root struct {
	XMLName xml.Name `xml:"root"`
	// ConfigID is the UDA 1.1 configId attribute, a number the device
	// changes when its description changes. Kept as text: clients only
	// compare it.
	ConfigID    string      `xml:"configId,attr,omitempty"`
	SpecVersion SpecVersion `xml:"specVersion"`
	// URLBase is the base for the relative URLs in the description. UDA 1.1
	// deprecated it and many routers fill it with junk; see Resolve.
	URLBase string `xml:"URLBase,omitempty"`
	Device  Device `xml:"device"`

	// Location is the URL the description was fetched from. It is the base
	// for relative URLs when URLBase is absent or unusable. It is not part
	// of the document.
	Location string `xml:"-"`
}

// SpecVersion is the UPnP Device Architecture version a description claims.
type SpecVersion struct {
	Major int `xml:"major"`
	Minor int `xml:"minor"`
}

// Device is a UPnP device, the root one or one embedded in it. Fields are in
// the order UDA lists them, which is also the order Marshal writes them.
type Device struct {
	DeviceType       string `xml:"deviceType"`
	FriendlyName     string `xml:"friendlyName"`
	Manufacturer     string `xml:"manufacturer"`
	ManufacturerURL  string `xml:"manufacturerURL,omitempty"`
	ModelDescription string `xml:"modelDescription,omitempty"`
	ModelName        string `xml:"modelName"`
	ModelNumber      string `xml:"modelNumber,omitempty"`
	ModelURL         string `xml:"modelURL,omitempty"`
	SerialNumber     string `xml:"serialNumber,omitempty"`
	UDN              string `xml:"UDN"`
	UPC              string `xml:"UPC,omitempty"`

	Icons    []Icon    `xml:"iconList>icon"`
	Services []Service `xml:"serviceList>service"`
	Devices  []Device  `xml:"deviceList>device"`

	PresentationURL string `xml:"presentationURL,omitempty"`
}

// Icon is one entry of a device's iconList.
type Icon struct {
	MIMEType string `xml:"mimetype"`
	Width    int    `xml:"width"`
	Height   int    `xml:"height"`
	Depth    int    `xml:"depth"`
	URL      string `xml:"url"`
}

// Service is one entry of a device's serviceList. The URLs are as written in
// the description; pass them to Root.Resolve before use.
type Service struct {
	ServiceType string `xml:"serviceType"`
	ServiceID   string `xml:"serviceId"`
	SCPDURL     string `xml:"SCPDURL"`
	ControlURL  string `xml:"controlURL"`
	EventSubURL string `xml:"eventSubURL"`
}

// UnmarshalXML reads specVersion leniently: a version that is not a plain
// number reads as 0 instead of failing the whole description.
func (v *SpecVersion) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var w struct {
		Major string `xml:"major"`
		Minor string `xml:"minor"`
	}
	if err := d.DecodeElement(&w, &start); err != nil {
		return err
	}
	v.Major, v.Minor = lenientInt(w.Major), lenientInt(w.Minor)
	return nil
}

// UnmarshalXML reads an icon leniently: sizes such as "16px" or "" read as
// 0 instead of failing the whole description over a picture.
func (ic *Icon) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var w struct {
		MIMEType string `xml:"mimetype"`
		Width    string `xml:"width"`
		Height   string `xml:"height"`
		Depth    string `xml:"depth"`
		URL      string `xml:"url"`
	}
	if err := d.DecodeElement(&w, &start); err != nil {
		return err
	}
	*ic = Icon{
		MIMEType: w.MIMEType,
		Width:    lenientInt(w.Width),
		Height:   lenientInt(w.Height),
		Depth:    lenientInt(w.Depth),
		URL:      w.URL,
	}
	return nil
}

func lenientInt(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0
	}
	return n
}

// ParseDescription parses a root device description fetched from location
// (which may be empty when the document did not come over HTTP).
//
// It is deliberately lenient, because the documents routers serve are often
// not well-formed by the letter of XML or UDA: whitespace before the XML
// declaration, no declaration or no namespace at all, the default namespace
// declared again on <device>, ISO-8859-1 text with or without an encoding
// declaration, CR line ends, unknown vendor elements. Every text field is
// trimmed, since some firmware breaks lines inside elements. It rejects
// documents over MaxDescriptionSize and any DOCTYPE that declares entities,
// which a description never needs.
func ParseDescription(data []byte, location string) (*Root, error) {
	if len(data) > MaxDescriptionSize {
		return nil, fmt.Errorf("upnp: device description is %d bytes, over the %d-byte limit: %w", len(data), MaxDescriptionSize, ErrBodyTooLarge)
	}
	d := newDecoder(data)
	var start xml.StartElement
prolog:
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("upnp: device description is not XML (%w); check that the location points at the router's root description", err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			if hasEntityDecl(t) {
				return nil, errors.New("upnp: device description declares DTD entities, which UPnP never uses; refusing to parse it")
			}
		case xml.StartElement:
			start = t
			break prolog
		}
	}
	if start.Name.Local != "root" {
		return nil, fmt.Errorf("upnp: document has root element <%s>, not <root>: the location does not point at a UPnP device description", start.Name.Local)
	}
	r := new(Root)
	if err := d.DecodeElement(r, &start); err != nil {
		return nil, fmt.Errorf("upnp: malformed device description: %w", err)
	}
	r.normalize()
	if r.Device.DeviceType == "" && len(r.Device.Services) == 0 && len(r.Device.Devices) == 0 {
		return nil, errors.New("upnp: device description has no <device> element")
	}
	r.Location = strings.TrimSpace(location)
	return r, nil
}

// hasEntityDecl reports whether a <!...> directive is a DOCTYPE with an
// internal subset. Go's decoder never expands declared entities, but a
// document that declares them is an attack or a mistake, never a router.
func hasEntityDecl(dir xml.Directive) bool {
	s := strings.TrimSpace(string(dir))
	if len(s) < 7 || !strings.EqualFold(s[:7], "DOCTYPE") {
		return false
	}
	return strings.Contains(s, "[") || strings.Contains(strings.ToUpper(s), "ENTITY")
}

// normalize trims every text field. Firmware writes values on their own
// line (Technicolor's manufacturerURL) or indents them.
func (r *Root) normalize() {
	r.ConfigID = strings.TrimSpace(r.ConfigID)
	r.URLBase = strings.TrimSpace(r.URLBase)
	r.Device.normalize()
}

func (d *Device) normalize() {
	for _, p := range []*string{
		&d.DeviceType, &d.FriendlyName, &d.Manufacturer, &d.ManufacturerURL,
		&d.ModelDescription, &d.ModelName, &d.ModelNumber, &d.ModelURL,
		&d.SerialNumber, &d.UDN, &d.UPC, &d.PresentationURL,
	} {
		*p = strings.TrimSpace(*p)
	}
	for i := range d.Icons {
		ic := &d.Icons[i]
		ic.MIMEType, ic.URL = strings.TrimSpace(ic.MIMEType), strings.TrimSpace(ic.URL)
	}
	for i := range d.Services {
		s := &d.Services[i]
		for _, p := range []*string{&s.ServiceType, &s.ServiceID, &s.SCPDURL, &s.ControlURL, &s.EventSubURL} {
			*p = strings.TrimSpace(*p)
		}
	}
	for i := range d.Devices {
		d.Devices[i].normalize()
	}
}

// Walk calls fn for every service in the device tree, depth-first: a
// device's own services before those of its embedded devices, each list in
// document order. chain holds the devices from the root down to the one
// owning s; it is a fresh slice on each call. Walk stops when fn returns
// false.
func (r *Root) Walk(fn func(chain []*Device, s *Service) bool) {
	walk([]*Device{&r.Device}, fn)
}

func walk(chain []*Device, fn func([]*Device, *Service) bool) bool {
	d := chain[len(chain)-1]
	for i := range d.Services {
		if !fn(append([]*Device(nil), chain...), &d.Services[i]) {
			return false
		}
	}
	for i := range d.Devices {
		if !walk(append(chain[:len(chain):len(chain)], &d.Devices[i]), fn) {
			return false
		}
	}
	return true
}

// isAbsoluteRef reports whether a reference carries its own scheme
// (^[A-Za-z][A-Za-z0-9+.-]*://). A bare "uuid:.../WANPPPConnection:1" does
// not: Broadcom stacks put colons in relative paths, and a generic URL
// parser takes "uuid" for a scheme. It is written by hand, not as a
// regexp, so that the gateway-only build links no regexp engine.
func isAbsoluteRef(ref string) bool {
	scheme, _, ok := strings.Cut(ref, "://")
	if !ok || scheme == "" {
		return false
	}
	for i, c := range scheme {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if i == 0 && !letter || !letter && !('0' <= c && c <= '9') && c != '+' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// Resolve turns a URL from the description (a controlURL, SCPDURL,
// eventSubURL or presentationURL) into an absolute http or https URL.
//
// Relative references resolve against URLBase when it is a usable absolute
// http URL, else against Location. URLBase is unusable when it is a template
// the firmware never filled in ("http://%s:%d", "{port}",
// "{{listenAddr}}"), or when it names a loopback address while Location
// does not (routers that render it before they know their LAN address).
// A path with colons in it ("/uuid:abc/WANPPPConnection:1", or the same
// without the leading slash) is a path, not a scheme. Absolute references
// are used as they are, so services on other ports keep them.
func (r *Root) Resolve(ref string) (string, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return "", errors.New("upnp: the device description has an empty URL where one is required")
	}
	if isAbsoluteRef(ref) {
		u, err := usableHTTPURL(ref)
		if err != nil {
			return "", fmt.Errorf("upnp: the device description has an unusable URL %q: %w", ref, err)
		}
		return u.String(), nil
	}
	base, err := r.base()
	if err != nil {
		return "", fmt.Errorf("upnp: cannot resolve %q: %w", ref, err)
	}
	if ref[0] != '/' && ref[0] != '?' && ref[0] != '#' {
		ref = "./" + ref
	}
	rel, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("upnp: the device description has an unusable URL %q: %w", strings.TrimPrefix(ref, "./"), err)
	}
	// A network-path reference ("//host/x") can still name a bad host.
	u, err := usableHTTPURL(base.ResolveReference(rel).String())
	if err != nil {
		return "", fmt.Errorf("upnp: the device description has an unusable URL %q: %w", strings.TrimPrefix(ref, "./"), err)
	}
	return u.String(), nil
}

// base picks the URL relative references resolve against.
func (r *Root) base() (*url.URL, error) {
	loc, locErr := usableHTTPURL(r.Location)
	if ub := strings.TrimSpace(r.URLBase); ub != "" {
		if u, err := usableHTTPURL(ub); err == nil && (loc == nil || !isLoopback(u) || isLoopback(loc)) {
			return u, nil
		}
	}
	if locErr != nil {
		if r.Location == "" {
			return nil, fmt.Errorf("the description has no usable URLBase (%q) and its location is unknown", r.URLBase)
		}
		return nil, fmt.Errorf("the description has no usable URLBase and its location %q is unusable: %w", r.Location, locErr)
	}
	return loc, nil
}

// usableHTTPURL parses s as an absolute http or https URL with a real host
// and port, which is what a router's URL must be before anything dials it.
func usableHTTPURL(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty URL")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("scheme %q is not http", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("invalid port %q", p)
		}
	}
	return u, nil
}

func isLoopback(u *url.URL) bool {
	h := u.Hostname()
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// FetchDescription GETs the root description at location and parses it. A
// nil hc means a private client that never uses a proxy. When ctx has no
// deadline, the request is bounded to 10 seconds.
func FetchDescription(ctx context.Context, hc *http.Client, location string) (*Root, error) {
	if _, err := usableHTTPURL(location); err != nil {
		return nil, fmt.Errorf("upnp: device location %q is not a usable http URL: %w", location, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, fetchTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSpace(location), nil)
	if err != nil {
		return nil, fmt.Errorf("upnp: fetching device description: %w", err)
	}
	req.Header.Set("User-Agent", "portfwd")
	resp, err := do(hc, req)
	if err != nil {
		return nil, fmt.Errorf("upnp: fetching device description from %s: %w", location, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("upnp: fetching device description from %s: %w", location, descriptionStatusError(resp.Status))
	}
	if resp.ContentLength > MaxDescriptionSize {
		return nil, fmt.Errorf("upnp: device description at %s is %d bytes: %w", location, resp.ContentLength, ErrBodyTooLarge)
	}
	data, err := ReadLimited(resp.Body, MaxDescriptionSize)
	if err != nil {
		return nil, fmt.Errorf("upnp: reading device description from %s: %w", location, err)
	}
	// Relative URLs resolve against the document's final address, after
	// any redirect.
	final := location
	if resp.Request != nil && resp.Request.URL != nil {
		final = resp.Request.URL.String()
	}
	root, err := ParseDescription(data, final)
	if err != nil {
		return nil, fmt.Errorf("%w (fetched from %s)", err, location)
	}
	return root, nil
}

// descriptionStatusError is an HTTP status other than 200 OK in answer to
// a description request.
type descriptionStatusError string

func (e descriptionStatusError) Error() string {
	return "HTTP " + string(e) + "; the device may have restarted or changed address, so discover it again"
}

// Marshal renders the description as a UTF-8 XML document in the UDA
// device-1-0 namespace, as a gateway serves it. It checks the fields UDA
// requires, so a broken description fails at startup rather than on a
// client. Location is not part of the document and is ignored.
func (r *Root) Marshal() ([]byte, error) {
	if r.SpecVersion.Major < 1 {
		return nil, errors.New("upnp: description has no specVersion; set SpecVersion to 1.0 or 1.1")
	}
	if err := r.Device.validate("root device"); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	e := xml.NewEncoder(&buf)
	start := xml.StartElement{Name: xml.Name{Space: DeviceNamespace, Local: "root"}}
	if err := e.EncodeElement(r, start); err != nil {
		return nil, fmt.Errorf("upnp: rendering device description: %w", err)
	}
	if err := e.Close(); err != nil {
		return nil, fmt.Errorf("upnp: rendering device description: %w", err)
	}
	buf.WriteString("\r\n")
	return buf.Bytes(), nil
}

func (d *Device) validate(where string) error {
	if d.DeviceType == "" || d.UDN == "" {
		return fmt.Errorf("upnp: %s needs a deviceType and a UDN", where)
	}
	for _, s := range d.Services {
		if s.ServiceType == "" || s.ServiceID == "" || s.SCPDURL == "" || s.ControlURL == "" {
			return fmt.Errorf("upnp: service %q of %s needs serviceType, serviceId, SCPDURL and controlURL", s.ServiceID, d.DeviceType)
		}
	}
	for i := range d.Devices {
		if err := d.Devices[i].validate(fmt.Sprintf("embedded device %q", d.Devices[i].DeviceType)); err != nil {
			return err
		}
	}
	return nil
}
