package cliflag

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	newFS := func() *flag.FlagSet {
		fs := flag.NewFlagSet("tool run", flag.ContinueOnError)
		fs.Int("pairs", 8, "pairs per cell")
		return fs
	}
	var out bytes.Buffer
	err := Parse(newFS(), []string{"--pairs", "x"}, &out)
	if err == nil || out.Len() != 0 || strings.Count(err.Error(), "\n") != 0 ||
		!strings.Contains(err.Error(), "tool run: invalid value \"x\" for flag -pairs") || !strings.Contains(err.Error(), "tool run --help") {
		t.Errorf("bad flag: err %q, %q written", err, out.String())
	}
	out.Reset()
	if err := Parse(newFS(), []string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "pairs per cell") {
		t.Errorf("--help: err %v, wrote %q", err, out.String())
	}
	fs := newFS()
	if err := Parse(fs, []string{"--pairs", "3", "pos"}, &out); err != nil || fs.Lookup("pairs").Value.String() != "3" || fs.Arg(0) != "pos" {
		t.Errorf("good flags: %v, pairs %s, args %v", err, fs.Lookup("pairs").Value, fs.Args())
	}
}
