package spec

import "strings"

// checkImageCycles reports each cycle of from references once, naming the
// whole cycle, with the subject on the from argument that closes it.
func (l *loader) checkImageCycles() {
	state := map[string]int{}
	for _, label := range keys(l.images) {
		var stack []string
		cur := label
		for cur != "" && state[cur] == 0 {
			state[cur] = visiting
			stack = append(stack, cur)
			cur = l.images[cur].img.From
		}
		if cur != "" && state[cur] == visiting {
			i := indexOf(stack, cur)
			chain := append(append([]string(nil), stack[i:]...), cur)
			for j := range chain {
				chain[j] = "image." + chain[j]
			}
			last := l.images[stack[len(stack)-1]]
			l.errorf(last.fromAttr.Expr.Range(), "Cycle between images",
				"The images derive from each other in a cycle: %s. An image's from must lead to an image built from a recipe or an import.",
				strings.Join(chain, " → "))
		}
		for _, n := range stack {
			state[n] = done
		}
	}
}
