// Package profiles embeds the bench matrices shipped with the binary
// (smoke, quick, full, sampling, target, scale, ...) so `bench run --profile NAME` needs no files on disk.
package profiles

import "embed"

// FS holds every <name>.yaml profile.
//
//go:embed *.yaml
var FS embed.FS
