// Package cliflag parses a subcommand's flags the way every command here
// reports them: a bad flag is one line naming it, the flag list is for
// --help only.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Parse parses args into fs without letting the flag package write. On
// -h/--help it writes fs's flags to out and returns flag.ErrHelp; any other
// error comes back as one line that names fs and points at --help.
func Parse(fs *flag.FlagSet, args []string, out io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		Help(fs, out)
		return err
	}
	if err != nil {
		// one line, whatever the argument held (the flag package quotes
		// nothing: a newline in an argument would split the message)
		return fmt.Errorf("%s: %s (see '%s --help')", fs.Name(), strings.Join(strings.Fields(err.Error()), " "), fs.Name())
	}
	return nil
}

// Help writes fs's name and flags to out, as --help shows them.
func Help(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprintf(out, "Usage of %s:\n", fs.Name())
	fs.SetOutput(out)
	fs.PrintDefaults()
}
