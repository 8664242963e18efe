package kiwi

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/imsbuild/imsbuild/internal/atomicfile"
)

// placeholder matches "{{ key }}" with optional whitespace inside the braces.
var placeholder = regexp.MustCompile(`\{\{\s*([^{}]*?)\s*\}\}`)

// ErrUnknownKey reports a placeholder with no value in the template.
var ErrUnknownKey = errors.New("unknown template key")

// Render renders the IMS template_dictionary into the description file of
// descDir (config.xml, or the single *.kiwi file) in place, as the IMS
// fetch-recipe step does: every "{{ key }}" (whitespace inside the braces
// optional) becomes template[key], verbatim (IMS does not XML-escape
// values). A placeholder whose key the template lacks is an error wrapping
// ErrUnknownKey and naming the key and file:line; the file is then left as
// it was. Other files of the description are not rendered.
func Render(descDir string, template map[string]string) error {
	file, err := DescriptionFile(descDir)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	in, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	defer in.Close()
	out, err := atomicfile.Create(file, fi.Mode().Perm())
	if err != nil {
		return fmt.Errorf("render %s: %w", file, err)
	}
	defer out.Abort()

	var errs []error
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	w := bufio.NewWriter(out)
	for line := 1; sc.Scan(); line++ {
		text := placeholder.ReplaceAllStringFunc(sc.Text(), func(m string) string {
			key := strings.TrimSpace(m[2 : len(m)-2])
			v, ok := template[key]
			if !ok {
				errs = append(errs, fmt.Errorf("%s:%d: %w %q", file, line, ErrUnknownKey, key))
				return m
			}
			return v
		})
		w.WriteString(text)
		w.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("render %s: %w", file, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("render: %w", errors.Join(errs...))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("render %s: %w", file, err)
	}
	if err := out.Commit(); err != nil {
		return fmt.Errorf("render %s: %w", file, err)
	}
	return nil
}
