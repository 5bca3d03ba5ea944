package matrix

import (
	"io/fs"
	"strings"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/profiles"
)

func profilesDir() ([]string, error) {
	var names []string
	err := fs.WalkDir(profiles.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".yaml") {
			names = append(names, strings.TrimSuffix(path, ".yaml"))
		}
		return err
	})
	return names, err
}
