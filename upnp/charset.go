package upnp

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"unicode/utf8"
)

// newDecoder returns a non-strict XML decoder over data that copes with the
// character sets routers really send:
//
//   - ISO-8859-1 and Windows-1252, declared, are converted. As browsers do,
//     both are read as Windows-1252: firmware that says Latin-1 writes
//     Windows-1252 text (typographic quotes, the euro sign). A document so
//     labelled that is nonetheless valid UTF-8 is read as UTF-8.
//   - Any other declared charset is passed through as UTF-8: the documents
//     are ASCII in practice, and a wrong label is likelier than UTF-16.
//   - Undeclared or UTF-8 documents that are not valid UTF-8 (the usual case
//     for a router's Latin-1 friendly name) have each stray byte read as
//     Windows-1252 instead of failing the whole document.
//
// In all cases control characters XML forbids become U+FFFD, so one bad
// byte in a device name does not lose the device.
func newDecoder(data []byte) *xml.Decoder {
	data = bytes.TrimLeft(data, "\ufeff \t\r\n")
	if declaredCharset(data) == "" {
		data = toUTF8(data, false)
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = false
	d.CharsetReader = charsetReader
	return d
}

// charsetReader is the xml.Decoder CharsetReader described at newDecoder.
// The decoder only calls it for labels other than UTF-8. Callers have
// already bounded the input size, so reading it whole is fine.
func charsetReader(label string, r io.Reader) (io.Reader, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	// A document that is valid UTF-8 is UTF-8 whatever its label says:
	// Latin-1 text with accents almost never forms valid UTF-8, while
	// firmware that copies a Latin-1 declaration onto UTF-8 output is
	// common.
	all1252 := isWindows1252(label) && !utf8.Valid(data)
	return bytes.NewReader(toUTF8(data, all1252)), nil
}

// declaredCharset returns the encoding named by the XML declaration when
// encoding/xml would switch to it (anything but UTF-8), or "". It asks the
// decoder itself so the answer matches what the real decode will do.
func declaredCharset(data []byte) string {
	var label string
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = false
	d.CharsetReader = func(l string, r io.Reader) (io.Reader, error) {
		label = l
		return r, nil
	}
	// The declaration, if any, comes before the first element; a few
	// tokens of leading comments or whitespace are all that may precede it.
	for range 16 {
		tok, err := d.RawToken()
		if err != nil {
			break
		}
		if _, ok := tok.(xml.StartElement); ok {
			break
		}
		if pi, ok := tok.(xml.ProcInst); ok && pi.Target == "xml" {
			break
		}
	}
	return label
}

func isWindows1252(label string) bool {
	switch strings.ToLower(strings.TrimSpace(label)) {
	case "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1",
		"cp819", "ibm819", "iso-ir-100", "windows-1252", "cp1252", "x-cp1252":
		return true
	}
	return false
}

// cp1252 maps bytes 0x80-0x9F of Windows-1252; the five bytes it leaves
// undefined keep their ISO-8859-1 (C1 control) meaning.
var cp1252 = [32]rune{
	0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
	0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
}

func decode1252(b byte) rune {
	if b >= 0x80 && b < 0xA0 {
		return cp1252[b-0x80]
	}
	return rune(b)
}

// xmlChar reports whether XML 1.0 allows r in a document.
func xmlChar(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// toUTF8 converts data to valid UTF-8 holding only XML characters. With
// all1252 every byte is Windows-1252; otherwise data is UTF-8 and only bytes
// that do not form valid UTF-8 are read as Windows-1252.
func toUTF8(data []byte, all1252 bool) []byte {
	if !all1252 && clean(data) {
		return data
	}
	out := make([]byte, 0, len(data)+len(data)/8)
	for i := 0; i < len(data); {
		var r rune
		if all1252 {
			r = decode1252(data[i])
			i++
		} else {
			var n int
			r, n = utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n == 1 {
				r = decode1252(data[i])
			}
			i += n
		}
		if !xmlChar(r) {
			r = utf8.RuneError
		}
		out = utf8.AppendRune(out, r)
	}
	return out
}

// clean reports whether data is valid UTF-8 made only of XML characters.
func clean(data []byte) bool {
	for i := 0; i < len(data); {
		if c := data[i]; c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n == 1 || !xmlChar(r) {
			return false
		}
		i += n
	}
	return true
}
