package igd

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// PortMappingListNS is the namespace of the PortMappingList document that
// WANIPConnection:2's GetListOfPortMappings returns, XML-escaped, in its
// NewPortListing argument.
const PortMappingListNS = "urn:schemas-upnp-org:gw:WANIPConnection"

// ParsePortMappingList decodes a PortMappingList document:
//
//	<p:PortMappingList xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection">
//	  <p:PortMappingEntry>
//	    <p:NewRemoteHost></p:NewRemoteHost>
//	    <p:NewExternalPort>8080</p:NewExternalPort>
//	    <p:NewProtocol>TCP</p:NewProtocol>
//	    <p:NewInternalPort>80</p:NewInternalPort>
//	    <p:NewInternalClient>192.168.1.7</p:NewInternalClient>
//	    <p:NewEnabled>1</p:NewEnabled>
//	    <p:NewDescription>web</p:NewDescription>
//	    <p:NewLeaseTime>3600</p:NewLeaseTime>
//	  </p:PortMappingEntry>
//	</p:PortMappingList>
//
// Decoding is lenient where routers differ and the meaning is still clear:
// namespace prefixes and the case of element names are ignored, the SOAP
// names NewPortMappingDescription and NewLeaseDuration are accepted for
// NewDescription and NewLeaseTime, values are trimmed, booleans may be
// 1/0/true/false/yes/no, a missing NewEnabled means enabled, and empty
// input is an empty list. An entry without a valid external port is an
// error, so that a caller can fall back to another way of listing rather
// than show a wrong table.
func ParsePortMappingList(data []byte) ([]PortMapping, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = false
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }

	var (
		out      []PortMapping
		sawRoot  bool
		depth    int
		entry    *entryFields // the entry being read, nil outside one
		entryAt  int          // depth of the entry's element
		field    string       // local name of the field being read
		fieldVal strings.Builder
	)
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("igd: malformed PortMappingList: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			sawRoot = true
			switch {
			case entry == nil && strings.EqualFold(t.Name.Local, "PortMappingEntry"):
				entry, entryAt = &entryFields{}, depth
			case entry != nil && depth == entryAt+1:
				field = t.Name.Local
				fieldVal.Reset()
			}
		case xml.CharData:
			if entry != nil && field != "" && depth == entryAt+1 {
				fieldVal.Write(t)
			}
		case xml.EndElement:
			switch {
			case entry != nil && depth == entryAt+1 && field != "":
				entry.set(field, fieldVal.String())
				field = ""
			case entry != nil && depth == entryAt:
				m, err := entry.mapping()
				if err != nil {
					return nil, fmt.Errorf("igd: PortMappingList entry %d: %w", len(out)+1, err)
				}
				out = append(out, m)
				entry = nil
			}
			depth--
		}
	}
	if !sawRoot {
		return nil, errors.New("igd: PortMappingList has no XML element")
	}
	return out, nil
}

// entryFields collects the raw text of one PortMappingEntry.
type entryFields struct {
	remoteHost, extPort, proto, intPort, client, enabled, desc, lease string
	hasEnabled                                                        bool
}

func (e *entryFields) set(name, v string) {
	switch strings.ToLower(name) {
	case "newremotehost":
		e.remoteHost = v
	case "newexternalport":
		e.extPort = v
	case "newprotocol":
		e.proto = v
	case "newinternalport":
		e.intPort = v
	case "newinternalclient":
		e.client = v
	case "newenabled":
		e.enabled, e.hasEnabled = v, true
	case "newdescription", "newportmappingdescription":
		e.desc = v
	case "newleasetime", "newleaseduration":
		e.lease = v
	}
}

func (e *entryFields) mapping() (PortMapping, error) {
	m := PortMapping{
		RemoteHost:     strings.TrimSpace(e.remoteHost),
		Protocol:       normProto(e.proto),
		InternalClient: strings.TrimSpace(e.client),
		Description:    strings.TrimSpace(e.desc),
		Enabled:        true,
	}
	var err error
	if m.ExternalPort, err = parsePort(e.extPort); err != nil {
		return m, fmt.Errorf("external port: %w", err)
	}
	if m.InternalPort, err = parseOptionalPort(e.intPort); err != nil {
		return m, fmt.Errorf("internal port: %w", err)
	}
	if e.hasEnabled && strings.TrimSpace(e.enabled) != "" {
		if m.Enabled, err = parseBool(e.enabled); err != nil {
			return m, fmt.Errorf("enabled: %w", err)
		}
	}
	if m.LeaseDuration, err = parseSeconds(e.lease); err != nil {
		return m, fmt.Errorf("lease time: %w", err)
	}
	return m, nil
}

// AppendPortMappingList appends to dst the PortMappingList document for
// list, as GetListOfPortMappings returns it (before the SOAP layer escapes
// it into NewPortListing). Text is XML-escaped; characters XML cannot carry
// become U+FFFD. Lease durations are written in whole seconds.
func AppendPortMappingList(dst []byte, list []PortMapping) []byte {
	dst = append(dst, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<p:PortMappingList xmlns:p="`+PortMappingListNS+`"`+
		` xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"`+
		` xsi:schemaLocation="`+PortMappingListNS+` http://www.upnp.org/schemas/gw/WANIPConnection-v2.xsd">`+"\n"...)
	for _, m := range list {
		dst = append(dst, "<p:PortMappingEntry>"...)
		dst = appendField(dst, "NewRemoteHost", m.RemoteHost)
		dst = appendField(dst, "NewExternalPort", fmt.Sprint(m.ExternalPort))
		dst = appendField(dst, "NewProtocol", m.Protocol)
		dst = appendField(dst, "NewInternalPort", fmt.Sprint(m.InternalPort))
		dst = appendField(dst, "NewInternalClient", m.InternalClient)
		dst = appendField(dst, "NewEnabled", formatBool(m.Enabled))
		dst = appendField(dst, "NewDescription", m.Description)
		dst = appendField(dst, "NewLeaseTime", formatSeconds(m.LeaseDuration))
		dst = append(dst, "</p:PortMappingEntry>\n"...)
	}
	return append(dst, "</p:PortMappingList>\n"...)
}

func appendField(dst []byte, name, value string) []byte {
	dst = append(dst, "<p:"...)
	dst = append(dst, name...)
	dst = append(dst, '>')
	b := bytes.NewBuffer(dst)
	_ = xml.EscapeText(b, []byte(value)) // writes to a bytes.Buffer cannot fail
	dst = b.Bytes()
	dst = append(dst, "</p:"...)
	dst = append(dst, name...)
	return append(dst, '>')
}
