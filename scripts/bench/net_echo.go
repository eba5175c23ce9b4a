// net_echo.go -- TCP echo round trips in one Go process (net): an echo
// server and CONNS client goroutines on 127.0.0.1, SIZE-byte messages,
// SECONDS.  Run with GOMAXPROCS=1 for the one-core figure.
// Prints "<round trips per second> <connections>".
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func arg(i int, d float64) float64 {
	if len(os.Args) > i {
		if v, err := strconv.ParseFloat(os.Args[i], 64); err == nil {
			return v
		}
	}
	return d
}

func main() {
	conns, seconds, size := int(arg(1, 50)), arg(2, 5), int(arg(3, 64))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				buf := make([]byte, 65536)
				for {
					n, err := c.Read(buf)
					if err != nil {
						c.Close()
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						c.Close()
						return
					}
				}
			}(c)
		}
	}()
	var running int32 = 1
	var total int64
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	msg := make([]byte, size)
	ready.Add(conns)
	done.Add(conns)
	for i := 0; i < conns; i++ {
		go func() {
			defer done.Done()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				panic(err)
			}
			ready.Done()
			<-start
			buf := make([]byte, size)
			var n int64
			for atomic.LoadInt32(&running) == 1 {
				c.Write(msg)
				if _, err := io.ReadFull(c, buf); err != nil {
					break
				}
				n++
			}
			c.Close()
			atomic.AddInt64(&total, n)
		}()
	}
	ready.Wait()
	close(start)
	t0 := time.Now()
	time.Sleep(time.Duration(seconds * float64(time.Second)))
	atomic.StoreInt32(&running, 0)
	elapsed := time.Since(t0).Seconds()
	done.Wait()
	ln.Close()
	fmt.Printf("%.0f %d\n", float64(total)/elapsed, conns)
}
