package cli

import "strings"

// Suggest returns the candidate nearest to typed, for "did you mean ...?",
// or "" when none is near: one edit away (a swap of two neighbouring
// letters counts as one, so "lsit" finds "list"), else the only
// candidate that typed begins ("disc" for "discover"), else, for words
// of four letters or more, two edits away. A single letter suggests
// nothing.
func Suggest(typed string, candidates []string) string {
	typed = strings.ToLower(typed)
	if len(typed) < 2 {
		return ""
	}
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := distance(typed, strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist <= 1 {
		return best
	}
	prefixed := ""
	for _, c := range candidates {
		if strings.HasPrefix(strings.ToLower(c), typed) {
			if prefixed != "" {
				prefixed = "-"
				break
			}
			prefixed = c
		}
	}
	switch {
	case prefixed != "" && prefixed != "-":
		return prefixed
	case bestDist == 2 && len(typed) >= 4:
		return best
	}
	return ""
}

// distance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of adjacent letters.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// d[i][j] is the distance between ra[:i] and rb[:j].
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
