package importer

import "strings"

// toolMessage condenses a tool's last output lines for an error: its FATAL
// ERROR lines (unsquashfs names the real problem there), else the last five.
func toolMessage(lines []string) string {
	var fatal, rest []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		switch {
		case l == "":
		case strings.HasPrefix(l, "FATAL ERROR:"):
			fatal = append(fatal, strings.TrimSpace(strings.TrimPrefix(l, "FATAL ERROR:")))
		default:
			rest = append(rest, l)
		}
	}
	if len(fatal) > 0 {
		return strings.Join(fatal, "; ")
	}
	if len(rest) > 5 {
		rest = rest[len(rest)-5:]
	}
	return strings.Join(rest, "; ")
}
