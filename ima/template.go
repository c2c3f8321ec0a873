package ima

import (
	"fmt"
	"strings"
)

// FieldID names one template field as the kernel's template format strings do.
type FieldID string

// The template fields the kernel supports (security/integrity/ima/ima_template.c).
const (
	FieldD            FieldID = "d"      // legacy digest, no algorithm prefix
	FieldN            FieldID = "n"      // legacy name, size-limited
	FieldDNG          FieldID = "d-ng"   // "<algo>:" NUL digest
	FieldDNGv2        FieldID = "d-ngv2" // "<type>:<algo>:" NUL digest
	FieldNNG          FieldID = "n-ng"   // name with its NUL
	FieldSig          FieldID = "sig"
	FieldBuf          FieldID = "buf"
	FieldDModsig      FieldID = "d-modsig"
	FieldModsig       FieldID = "modsig"
	FieldEvmSig       FieldID = "evmsig"
	FieldIUID         FieldID = "iuid"
	FieldIGID         FieldID = "igid"
	FieldIMode        FieldID = "imode"
	FieldXattrNames   FieldID = "xattrnames"
	FieldXattrLengths FieldID = "xattrlengths"
	FieldXattrValues  FieldID = "xattrvalues"
)

// showKind is how the kernel renders a field in the ASCII list.
type showKind uint8

const (
	showDigest     showKind = iota // hex of all bytes
	showDigestAlgo                 // C string up to the last ':', then hex after ':' NUL
	showString                     // C string
	showHex                        // hex of all bytes
	showUint                       // decimal of a 1/2/4/8 byte integer
)

var fieldShow = map[FieldID]showKind{
	FieldD: showDigest, FieldN: showString, FieldDNG: showDigestAlgo,
	FieldDNGv2: showDigestAlgo, FieldNNG: showString, FieldSig: showHex,
	FieldBuf: showHex, FieldDModsig: showDigestAlgo, FieldModsig: showHex,
	FieldEvmSig: showHex, FieldIUID: showUint, FieldIGID: showUint,
	FieldIMode: showUint, FieldXattrNames: showString,
	FieldXattrLengths: showHex, FieldXattrValues: showHex,
}

// Kernel limits on template formats.
const (
	maxTemplateFields  = 15 // IMA_TEMPLATE_NUM_FIELDS_MAX
	maxFieldIDLen      = 16 // IMA_TEMPLATE_FIELD_ID_MAX_LEN
	eventNameLenMax    = 255
	legacyTemplateName = "ima"
)

// maxRestoreNameLen is MAX_TEMPLATE_NAME_LEN of the restoring kernel: the
// sizeof of the longest built-in format string, NUL included. A template name
// of this length or longer is refused by ima_restore_measurement_list.
const maxRestoreNameLen = len("d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode") + 1

// Template is a template descriptor: a name (empty for a custom format) and
// its ordered fields.
type Template struct {
	Name   string    // built-in name, or "" for a custom format
	Format string    // "d-ng|n-ng|..."
	Fields []FieldID // parsed Format
}

// Legacy reports whether this is the original "ima" template, whose binary
// form has no template-data length and whose name is not NUL-terminated.
func (t *Template) Legacy() bool { return t.Name == legacyTemplateName }

func mustTemplate(name, format string) *Template {
	fs, err := parseFormat(format)
	if err != nil {
		panic(err) // built-in table only
	}
	return &Template{Name: name, Format: format, Fields: fs}
}

// builtinTemplates mirrors the kernel's builtin_templates table.
var builtinTemplates = []*Template{
	mustTemplate("ima", "d|n"),
	mustTemplate("ima-ng", "d-ng|n-ng"),
	mustTemplate("ima-sig", "d-ng|n-ng|sig"),
	mustTemplate("ima-ngv2", "d-ngv2|n-ng"),
	mustTemplate("ima-sigv2", "d-ngv2|n-ng|sig"),
	mustTemplate("ima-buf", "d-ng|n-ng|buf"),
	mustTemplate("ima-modsig", "d-ng|n-ng|sig|d-modsig|modsig"),
	mustTemplate("evm-sig", "d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode"),
}

// BuiltinTemplates returns the names of the kernel's built-in templates.
func BuiltinTemplates() []string {
	out := make([]string, len(builtinTemplates))
	for i, t := range builtinTemplates {
		out[i] = t.Name
	}
	return out
}

// parseFormat validates a format string the way template_desc_init_fields
// does: at most 15 '|'-separated fields, each 1..16 bytes and known.
func parseFormat(format string) ([]FieldID, error) {
	n := strings.Count(format, "|") + 1
	if n > maxTemplateFields {
		return nil, fmt.Errorf("%w: format %q has %d fields, at most %d allowed", ErrUnknownTemplate, format, n, maxTemplateFields)
	}
	out := make([]FieldID, 0, n)
	for part := range strings.SplitSeq(format, "|") {
		if len(part) == 0 || len(part) > maxFieldIDLen {
			return nil, fmt.Errorf("%w: format %q has a field of length %d", ErrUnknownTemplate, format, len(part))
		}
		id := FieldID(part)
		if _, ok := fieldShow[id]; !ok {
			return nil, fmt.Errorf("%w: format %q names unknown field %q", ErrUnknownTemplate, format, part)
		}
		out = append(out, id)
	}
	return out, nil
}

// LookupTemplate resolves a template name as the kernel does: a built-in
// name, a built-in format string, or else a custom format string.
func LookupTemplate(name string) (*Template, error) {
	if t := lookupBuiltin(name); t != nil {
		return t, nil
	}
	if strings.ContainsRune(name, 0) {
		return nil, fmt.Errorf("%w: template name contains NUL", ErrUnknownTemplate)
	}
	fs, err := parseFormat(name)
	if err != nil {
		return nil, err
	}
	return &Template{Format: name, Fields: fs}, nil
}

func lookupBuiltin(name string) *Template {
	for _, t := range builtinTemplates {
		if t.Name == name || t.Format == name {
			return t
		}
	}
	return nil
}

// templateCache resolves names seen in one parse without allocating for the
// built-in ones and at most once for each custom one.
type templateCache struct {
	custom map[string]cacheEntry
	last   *Template // the template lookupName returned last
}

func (c *templateCache) lookup(b []byte) (*Template, error) {
	t, _, err := c.lookupName(b)
	return t, err
}

// lookupName also returns the name as a string equal to b, shared between
// entries (built-in names and each distinct custom name are stored once).
func (c *templateCache) lookupName(b []byte) (*Template, string, error) {
	// string(b) in a comparison does not allocate.
	if c.last != nil && c.last.Name != "" && c.last.Name == string(b) {
		return c.last, c.last.Name, nil
	}
	for _, t := range builtinTemplates {
		if t.Name == string(b) {
			c.last = t
			return t, t.Name, nil
		}
	}
	if ce, ok := c.custom[string(b)]; ok {
		c.last = ce.t
		return ce.t, ce.name, nil
	}
	name := string(b)
	t, err := LookupTemplate(name)
	if err != nil {
		return nil, "", err
	}
	if c.custom == nil {
		c.custom = make(map[string]cacheEntry)
	}
	c.custom[name] = cacheEntry{t, name}
	c.last = t
	return t, name, nil
}

type cacheEntry struct {
	t    *Template
	name string
}

// lookupParsed returns the template of an entry that parseEntry accepted
// (nil if it no longer resolves), without allocating.
func (c *templateCache) lookupParsed(name string) *Template {
	for _, t := range builtinTemplates {
		if t.Name == name {
			return t
		}
	}
	if ce, ok := c.custom[name]; ok {
		return ce.t
	}
	t, err := LookupTemplate(name)
	if err != nil {
		return nil
	}
	if c.custom == nil {
		c.custom = make(map[string]cacheEntry)
	}
	c.custom[name] = cacheEntry{t, name}
	return t
}
