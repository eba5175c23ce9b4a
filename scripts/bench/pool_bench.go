// pool_bench.go -- the Go side of scripts/bench/pool.sh (issue 3).
//
//	go run pool_bench.go cpu|spawn [reps]
//
// cpu: 64 goroutines each running the arithmetic of pool_bench.lua's
// cpu_work (GOMAXPROCS from the environment); spawn: go func + channel
// receive of an empty function.  Prints "go.WHAT <seconds>" (medians).
package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"
)

const cpuIters = 8000000

func cpuWork(seed float64) float64 {
	s := 0.0
	for i := 1; i <= cpuIters; i++ {
		s += math.Sqrt(float64(i) + seed)
	}
	return s
}

func median(t []float64) float64 {
	sort.Float64s(t)
	n := len(t)
	if n%2 == 1 {
		return t[n/2]
	}
	return (t[n/2-1] + t[n/2]) / 2
}

func main() {
	what := os.Args[1]
	reps := 5
	if len(os.Args) > 2 {
		reps, _ = strconv.Atoi(os.Args[2])
	}
	switch what {
	case "cpu":
		run := func() {
			var wg sync.WaitGroup
			out := make([]float64, 64)
			for i := 0; i < 64; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					out[i] = cpuWork(float64(i + 1))
				}(i)
			}
			wg.Wait()
		}
		run()
		ts := make([]float64, reps)
		for r := range ts {
			t0 := time.Now()
			run()
			ts[r] = time.Since(t0).Seconds()
		}
		fmt.Printf("go.cpu_w%d %.9g\n", runtime.GOMAXPROCS(0), median(ts))
	case "spawn":
		done := make(chan struct{})
		ts := make([]float64, 0, 2000)
		for b := 0; b < 2000; b++ {
			t0 := time.Now()
			for i := 0; i < 100; i++ {
				go func() { done <- struct{}{} }()
				<-done
			}
			ts = append(ts, time.Since(t0).Seconds()/100)
		}
		fmt.Printf("go.spawn %.9g\n", median(ts))
	default:
		fmt.Fprintln(os.Stderr, "usage: pool_bench.go cpu|spawn [reps]")
		os.Exit(2)
	}
}
