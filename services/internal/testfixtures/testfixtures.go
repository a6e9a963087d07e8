// Package testfixtures holds the real third-party REDCap dictionaries that
// several packages' tests read (see README.md for their sources and
// licences), embedded so that one copy serves them all.
package testfixtures

import (
	"embed"
	"io/fs"
	"path"
	"sort"
)

//go:embed Project1xml_DataDictionary.csv instrument_designation.csv redcap
var files embed.FS

// Read returns one file by its path in this folder, e.g.
// "redcap/projects/longitudinal/event.csv".
func Read(name string) ([]byte, error) { return files.ReadFile(name) }

// Has reports whether a file exists.
func Has(name string) bool {
	_, err := fs.Stat(files, name)
	return err == nil
}

// Dictionary is one real project's data dictionary.
type Dictionary struct {
	Name string // Project1xml, or the REDCapR project folder's name
	Dir  string // the folder of its other files ("" for Project1xml)
	CSV  []byte
}

// Dictionaries lists every data dictionary here: REDCap's validation-suite
// project first, then REDCapR's projects in name order.
func Dictionaries() []Dictionary {
	b, err := files.ReadFile("Project1xml_DataDictionary.csv")
	if err != nil {
		panic(err) // embedded: cannot happen
	}
	out := []Dictionary{{Name: "Project1xml", CSV: b}}
	dirs, _ := fs.Glob(files, "redcap/projects/*")
	sort.Strings(dirs)
	for _, d := range dirs {
		b, err := files.ReadFile(path.Join(d, "dictionary.csv"))
		if err != nil {
			continue
		}
		out = append(out, Dictionary{Name: path.Base(d), Dir: d, CSV: b})
	}
	return out
}
