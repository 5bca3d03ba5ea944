package features

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteJSON writes r as indented JSON with a trailing newline.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Decode reads a Report written by WriteJSON.
func Decode(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode feature report: %w", err)
	}
	return &r, nil
}

// WriteText writes a human-readable table.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "kernel %s (%s)  tracefs %q\n", r.Kernel, r.Arch, r.TracefsPath)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range r.Checks {
		mark := "yes"
		if !c.Available {
			mark = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Category, c.Name, mark, c.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "transports: %v  state maps: %v  missing: %d\n", r.Transports, r.MapTypes, len(r.Missing))
	return err
}
