package spec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	"github.com/imsbuild/imsbuild/internal/ctxio"
)

// Limits on what a build may make imsbuild read and parse. Build files are
// hostile input: without them a device file, a huge file or a deeply
// nested expression hangs imsbuild, exhausts memory or overflows the stack
// of the recursive-descent HCL parser (a fatal error, not a panic).
const (
	// maxBuildFileSize caps a build file or a -var-file.
	maxBuildFileSize = 16 << 20
	// maxReadFileSize caps what file and templatefile read into memory.
	maxReadFileSize = 64 << 20
	// maxNesting caps how deeply expressions, blocks and templates nest.
	maxNesting = 256
)

// errNotRegular is returned for devices, FIFOs, sockets and directories.
var errNotRegular = errors.New("not a regular file")

// openRegular opens path for reading if it is a regular file (following
// symlinks). It never blocks on a FIFO, and it checks the file it opened
// (fstat), not the path, so the file cannot be swapped in between.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %w (%s)", path, errNotRegular, fileKind(fi.Mode()))
	}
	// procfs and sysfs files look regular but are not: /proc/kmsg blocks
	// forever, others never end or change on every read.
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(int(f.Fd()), &st); err == nil && (st.Type == procMagic || st.Type == sysfsMagic) {
		f.Close()
		return nil, fmt.Errorf("%s: %w (a kernel interface file)", path, errNotRegular)
	}
	return f, nil
}

// Filesystem magic numbers (statfs(2)).
const (
	procMagic  = 0x9fa0
	sysfsMagic = 0x62656572
)

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	}
	return "a special file"
}

// readRegular reads the regular file at path, refusing one larger than max
// bytes without reading more than max+1 of them.
func readRegular(ctx context.Context, path string, max int64) ([]byte, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(ctxio.Reader(ctx, f), max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d MiB", path, max>>20)
	}
	return b, nil
}

// checkNesting reports the first place where tokens nest deeper than
// maxNesting. Besides brackets, braces, quotes and template sequences, the
// parser recurses on each unary operator, splat and conditional of a chain,
// so those count too until a comma or a newline ends the expression, and
// on each template %{if} and %{for} until its %{endif} or %{endfor}.
func checkNesting(tokens hclsyntax.Tokens) *hcl.Diagnostic {
	type level struct {
		open hclsyntax.TokenType
		ops  int
	}
	stack := []level{{}}
	depth := 0      // len(stack)-1, the ops of every level and directives
	directives := 0 // open %{if} and %{for} template directives
	for i, tok := range tokens {
		top := &stack[len(stack)-1]
		if tok.Type == hclsyntax.TokenIdent && i > 0 && tokens[i-1].Type == hclsyntax.TokenTemplateControl {
			switch string(tok.Bytes) {
			case "if", "for":
				directives++
				depth++
			case "endif", "endfor":
				if directives > 0 {
					directives--
					depth--
				}
			}
		}
		switch tok.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen,
			hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl,
			hclsyntax.TokenOQuote, hclsyntax.TokenOHeredoc:
			stack = append(stack, level{open: tok.Type})
			depth++
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen,
			hclsyntax.TokenTemplateSeqEnd, hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc:
			if len(stack) > 1 { // unbalanced closers are the parser's to report
				depth -= 1 + top.ops
				stack = stack[:len(stack)-1]
				if tok.Type == hclsyntax.TokenCBrack && i >= 2 && tokens[i-1].Type == hclsyntax.TokenStar && tokens[i-2].Type == hclsyntax.TokenOBrack {
					stack[len(stack)-1].ops++ // a [*] splat recurses like an operator
					depth++
				}
			}
		case hclsyntax.TokenBang, hclsyntax.TokenMinus, hclsyntax.TokenQuestion:
			top.ops++
			depth++
		case hclsyntax.TokenStar:
			if i > 0 && tokens[i-1].Type == hclsyntax.TokenDot { // a .* splat
				top.ops++
				depth++
			}
		case hclsyntax.TokenComma:
			depth -= top.ops
			top.ops = 0
		case hclsyntax.TokenNewline:
			// Newlines end an expression except inside () and [].
			if top.open != hclsyntax.TokenOParen && top.open != hclsyntax.TokenOBrack {
				depth -= top.ops
				top.ops = 0
			}
		}
		if depth > maxNesting {
			return &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Nesting too deep",
				Detail: fmt.Sprintf("Blocks, brackets, templates, template directives, unary operators, splats and conditionals nest more than %d levels deep here. "+
					"Split the expression, for example with locals.", maxNesting),
				Subject: tok.Range.Ptr(),
			}
		}
	}
	return nil
}

// parseFile parses the build or variables file name, refusing files over
// maxBuildFileSize, and nesting over maxNesting before the parser sees it.
// summary titles the diagnostic of a file that cannot be read.
func (l *loader) parseFile(name, summary string) *hcl.File {
	start := hcl.Range{Filename: name, Start: hcl.InitialPos, End: hcl.InitialPos}
	src, err := readRegular(l.runCtx, name, maxBuildFileSize)
	if err != nil {
		l.errorf(start, summary, "%v.", err)
		return nil
	}
	// Lexing is linear and iterative; its errors are left to the parser.
	tokens, _ := hclsyntax.LexConfig(src, name, hcl.InitialPos)
	if d := checkNesting(tokens); d != nil {
		l.addDiag(d)
		return nil
	}
	f, diags := l.parser.ParseHCL(src, name)
	l.diags = append(l.diags, diags...)
	return f
}

// jsonDecodeFunc is stdlib's jsondecode refusing JSON nested deeper than
// maxNesting: cty decodes JSON recursively, and a few MiB of brackets
// overflowed its stack.
var jsonDecodeFunc = function.New(&function.Spec{
	Params: stdlib.JSONDecodeFunc.Params(),
	Type: func(args []cty.Value) (cty.Type, error) {
		if args[0].IsKnown() && !args[0].IsNull() {
			if err := checkJSONNesting(args[0].AsString()); err != nil {
				return cty.NilType, function.NewArgError(0, err)
			}
		}
		return stdlib.JSONDecodeFunc.ReturnTypeForValues(args)
	},
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return stdlib.JSONDecodeFunc.Call(args)
	},
})

// checkJSONNesting fails if arrays and objects in s nest deeper than
// maxNesting. Brackets inside strings do not count.
func checkJSONNesting(s string) error {
	depth, inString, escaped := 0, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > maxNesting {
				return fmt.Errorf("the JSON nests more than %d levels deep at byte %d", maxNesting, i)
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return nil
}
