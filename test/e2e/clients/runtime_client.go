// SPDX-License-Identifier: MIT
// Go's net/http through airlock, configured by nothing but the environment that `airlock env`
// prints (HTTPS_PROXY, NO_PROXY, SSL_CERT_FILE): GET, POST and an SSE stream. Go's standard
// library has no WebSocket client. Run by test/e2e/test_runtimes.py with
// `go run runtime_client.go BASE_URL PLAIN_URL` (https:// and http://, both through airlock).
//
// Each result is one line on stdout, for the test to judge:
//
//	PROXY <url> <what http.ProxyFromEnvironment chose, or DIRECT>
//	GET|POST|PLAIN <status> <body on one line>
//	SSE <n> <ms since the response head> <data>, then SSE_END <ms>
//
// Anything that fails exits non-zero with the error on stderr.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
	os.Exit(1)
}

func proxyFor(url string) string {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		fail("request "+url, err)
	}
	p, err := http.ProxyFromEnvironment(req)
	if err != nil {
		fail("proxy for "+url, err)
	}
	if p == nil {
		return "DIRECT"
	}
	return p.String()
}

func show(name string, resp *http.Response, err error) {
	if err != nil {
		fail(name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fail(name+" body", err)
	}
	fmt.Printf("%s %d %s\n", name, resp.StatusCode, body)
}

// Each event's arrival, timed from the response head: a buffered stream shows them all at the
// end.
func sse(client *http.Client, url string) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		fail("sse request", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		fail("sse", err)
	}
	defer resp.Body.Close()
	start := time.Now()
	in := bufio.NewReader(resp.Body)
	for n := 0; ; {
		line, err := in.ReadString('\n')
		if strings.HasPrefix(line, "data:") {
			fmt.Printf("SSE %d %d %s\n", n, time.Since(start).Milliseconds(),
				strings.TrimSpace(line[5:]))
			n++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			fail("sse body", err)
		}
	}
	fmt.Printf("SSE_END %d\n", time.Since(start).Milliseconds())
}

func main() {
	base, plain := os.Args[1], os.Args[2]
	for _, u := range []string{"https://localhost/", "https://127.0.0.1/", "https://[::1]/",
		base + "/"} {
		fmt.Printf("PROXY %s %s\n", u, proxyFor(u))
	}
	// The default transport: proxy from the environment, roots from SSL_CERT_FILE.
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Get(base + "/go-get?q=1")
	show("GET", resp, err)
	resp, err = client.Post(base+"/go-post", "text/plain", strings.NewReader("hello from go"))
	show("POST", resp, err)
	resp, err = client.Get(plain + "/go-plain")
	show("PLAIN", resp, err)
	sse(client, base+"/sse")
}
