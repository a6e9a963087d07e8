package web

import (
	"regexp"
	"strings"
)

var rowRe = regexp.MustCompile(`(?s)<tr class="site-row" data-site="([^"]+)">.*?<td class="result [^"]*">([^<]+)</td>.*?<td class="num exported">(\d+)</td>.*?<td class="num imported">(\d+)</td><td class="num dead">(\d+)</td><td class="num waiting">(\d+)</td>.*?<td class="num score">([^<]+)</td>`)

// SiteRows reads the sites table back from a rendered page (as a browser
// has it), for tests that check what the page shows: site -> "result
// exported imported dead-lettered waiting score".
func SiteRows(dom string) map[string]string {
	got := map[string]string{}
	for _, m := range rowRe.FindAllStringSubmatch(dom, -1) {
		got[m[1]] = strings.Join(m[2:], " ")
	}
	return got
}
