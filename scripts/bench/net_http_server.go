// net_http_server.go -- the HTTP server for the client benchmarks: Go's
// net/http on 127.0.0.1, answering GET /bytes/N with N bytes (with a
// Content-Length; made once per size) and every other GET with a 1 KiB
// body.  Prints its port on the first line, then serves until killed.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
)

func main() {
	body := []byte(strings.Repeat("x", 1024))
	var mu sync.Mutex
	big := map[int][]byte{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/bytes/")); err == nil && n >= 0 && n <= 1<<31 {
			mu.Lock()
			b, ok := big[n]
			if !ok {
				b = make([]byte, n)
				for i := range b {
					b[i] = byte('a' + i%26)
				}
				big[n] = b
			}
			mu.Unlock()
			w.Header().Set("Content-Length", strconv.Itoa(n))
			w.Write(b)
			return
		}
		w.Write(body)
	}))
}
