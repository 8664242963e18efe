// Package environ edits process environments ("NAME=value" lists).
package environ

import "strings"

// Without returns env without the variables named names, in a new slice.
func Without(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		for _, name := range names {
			if strings.HasPrefix(kv, name+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}
