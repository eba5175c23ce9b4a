// chan_bench.go -- Go's channels, the peer of chan_bench.lua: the same
// three measurements, printed as "name value unit" lines.
// Usage: go run chan_bench.go [messages]
package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"
)

// n values item(i) from a producer to a consumer that adds up weight(v),
// over a channel of this capacity, on two goroutines.
func throughput[T any](capacity, n int, item func(int) T, weight func(T) float64) float64 {
	ch := make(chan T, capacity)
	done := make(chan float64)
	start := time.Now()
	go func() {
		sum := 0.0
		for v := range ch {
			sum += weight(v)
		}
		done <- sum
	}()
	go func() {
		for i := 1; i <= n; i++ {
			ch <- item(i)
		}
		close(ch)
	}()
	sum := <-done
	elapsed := time.Since(start).Seconds()
	var want float64
	for i := 1; i <= n; i++ {
		want += weight(item(i))
	}
	if sum != want {
		panic("lost messages")
	}
	return float64(n) / elapsed
}

func numbers(capacity, n int) float64 {
	return throughput(capacity, n, func(i int) float64 { return float64(i) },
		func(v float64) float64 { return v })
}

// Short strings (16 distinct, 6 bytes each); the consumer sums their lengths.
func shortStrings(capacity, n int) float64 {
	var strs [16]string
	for k := range strs {
		strs[k] = fmt.Sprintf("item%02d", k)
	}
	return throughput(capacity, n, func(i int) string { return strs[i%16] },
		func(v string) float64 { return float64(len(v)) })
}

func pingpong(rounds int) (time.Duration, time.Duration) {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	lat := make([]time.Duration, rounds)
	for i := 0; i < rounds; i++ {
		t0 := time.Now()
		ping <- i
		<-pong
		lat[i] = time.Since(t0)
	}
	close(ping)
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	return lat[rounds/2], lat[rounds*99/100]
}

func select8(n int) float64 {
	var chans [8]chan int
	for k := range chans {
		chans[k] = make(chan int, 1024)
	}
	start := time.Now()
	go func() {
		for i := 1; i <= n; i++ {
			chans[i%8] <- i
		}
		for k := range chans {
			close(chans[k])
		}
	}()
	got, open := 0, 8
	c := chans
	for open > 0 {
		var ok bool
		var k int
		select {
		case _, ok = <-c[0]:
			k = 0
		case _, ok = <-c[1]:
			k = 1
		case _, ok = <-c[2]:
			k = 2
		case _, ok = <-c[3]:
			k = 3
		case _, ok = <-c[4]:
			k = 4
		case _, ok = <-c[5]:
			k = 5
		case _, ok = <-c[6]:
			k = 6
		case _, ok = <-c[7]:
			k = 7
		}
		if ok {
			got++
		} else {
			c[k] = nil // a nil channel never fires
			open--
		}
	}
	if got != n {
		panic("lost messages")
	}
	return float64(n) / time.Since(start).Seconds()
}

func main() {
	n := 1000000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	fmt.Printf("throughput_buffered1024 %.0f msg/s\n", numbers(1024, n))
	fmt.Printf("throughput_unbuffered %.0f msg/s\n", numbers(0, n/5))
	fmt.Printf("throughput_buffered1024_str %.0f msg/s\n", shortStrings(1024, n))
	fmt.Printf("throughput_unbuffered_str %.0f msg/s\n", shortStrings(0, n/5))
	median, p99 := pingpong(20000)
	fmt.Printf("pingpong_median %.2f us\n", float64(median.Nanoseconds())/1e3)
	fmt.Printf("pingpong_p99 %.2f us\n", float64(p99.Nanoseconds())/1e3)
	fmt.Printf("select8 %.0f msg/s\n", select8(n/2))
}
