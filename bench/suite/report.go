package suite

import (
	"fmt"
	"io"
	"strings"
)

// Verdict says how a figure compares with its target.
type Verdict string

// Verdicts.
const (
	Pass Verdict = "PASS"
	Miss Verdict = "MISS"
	Info Verdict = "info" // reported without a target
)

func verdict(ok bool) Verdict {
	if ok {
		return Pass
	}
	return Miss
}

// Figure is one number of the suite next to its target.
type Figure struct {
	Section string
	Name    string
	Value   string
	Target  string
	Verdict Verdict
}

// Report collects the figures and per-section details of one run.
type Report struct {
	Figures  []Figure
	Details  []Detail
	Failures []string // scenarios that could not run, with the reason
	nginx    string   // version of the nginx peer, when the wire scenario ran
}

// Detail is a block of Markdown under a section heading.
type Detail struct {
	Section string
	Text    string
}

func (r *Report) add(f Figure) { r.Figures = append(r.Figures, f) }

func (r *Report) detail(section, format string, a ...any) {
	r.Details = append(r.Details, Detail{Section: section, Text: fmt.Sprintf(format, a...)})
}

// PrintTable writes the figures as an aligned text table.
func (r *Report) PrintTable(w io.Writer) {
	cols := [4]int{len("figure"), len("value"), len("target"), len("verdict")}
	rows := make([][4]string, 0, len(r.Figures))
	for _, f := range r.Figures {
		row := [4]string{f.Section + ": " + f.Name, f.Value, f.Target, string(f.Verdict)}
		for i, c := range row {
			cols[i] = max(cols[i], len([]rune(c)))
		}
		rows = append(rows, row)
	}
	pad := func(s string, n int) string { return s + strings.Repeat(" ", n-len([]rune(s))) }
	fmt.Fprintf(w, "%s  %s  %s  %s\n", pad("figure", cols[0]), pad("value", cols[1]), pad("target", cols[2]), "verdict")
	fmt.Fprintln(w, strings.Repeat("-", cols[0]+cols[1]+cols[2]+cols[3]+6))
	for _, row := range rows {
		fmt.Fprintf(w, "%s  %s  %s  %s\n", pad(row[0], cols[0]), pad(row[1], cols[1]), pad(row[2], cols[2]), row[3])
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "NOT RUN: %s\n", f)
	}
}

// MarkdownTable renders the figures as a Markdown table.
func (r *Report) MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| section | figure | value | target | verdict |\n|---|---|---|---|---|\n")
	for _, f := range r.Figures {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", f.Section, f.Name, f.Value, f.Target, f.Verdict)
	}
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "\n**Not run:** %s\n", f)
	}
	return b.String()
}

// DetailsOf returns the details of one section, in order.
func (r *Report) DetailsOf(section string) string {
	var parts []string
	for _, d := range r.Details {
		if d.Section == section {
			parts = append(parts, d.Text)
		}
	}
	return strings.Join(parts, "\n\n")
}
