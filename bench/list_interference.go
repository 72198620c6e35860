// bench/list_interference.go: how much a large unpaginated LIST delays other
// clients (issue 7: "a 20 MB LIST runs while 50 other clients put and range:
// their p99 with and without the LIST"). Built and run by
// bench/list_interference.sh against real etcd and kshimd; clientv3 from
// Debian's golang-etcd-server-dev (GOPATH mode, offline).
//
// Usage: list_interference -endpoint HOST:PORT [-load] [-keys 10000]
//        [-value 2048] [-clients 50] [-seconds 10] [-list]
// -load writes the keys /li/list/NNNNNN with -value bytes each first. Then
// -clients clients (one connection each) alternate a Put of a 100-byte value
// to their own key and a single-key Range of a listed key for -seconds; with
// -list one more client loops unpaginated Range of the whole /li/list/
// prefix meanwhile. Prints one line:
//   ops=N put_p50_ms=.. put_p99_ms=.. get_p50_ms=.. get_p99_ms=..
//   all_p99_ms=.. lists=N list_p50_ms=.. list_mb=..
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
)

const prefix = "/li/list/"

func newClient(ep string) *clientv3.Client {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:          []string{ep},
		DialTimeout:        5 * time.Second,
		MaxCallRecvMsgSize: 1 << 30,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	return c
}

func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(float64(len(d)-1) * p)
	return float64(d[i].Microseconds()) / 1000
}

func load(ep string, keys, value int) {
	val := strings.Repeat("v", value)
	var wg sync.WaitGroup
	const workers = 16
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := newClient(ep)
			defer c.Close()
			for i := w; i < keys; i += workers {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.Put(ctx, fmt.Sprintf("%s%06d", prefix, i), val)
				cancel()
				if err != nil {
					fmt.Fprintln(os.Stderr, "load put:", err)
					os.Exit(1)
				}
			}
		}(w)
	}
	wg.Wait()
}

func main() {
	ep := flag.String("endpoint", "127.0.0.1:2379", "")
	doLoad := flag.Bool("load", false, "")
	keys := flag.Int("keys", 10000, "")
	value := flag.Int("value", 2048, "")
	clients := flag.Int("clients", 50, "")
	seconds := flag.Int("seconds", 10, "")
	doList := flag.Bool("list", false, "")
	flag.Parse()
	if *doLoad {
		load(*ep, *keys, *value)
	}
	cs := make([]*clientv3.Client, *clients)
	for i := range cs {
		cs[i] = newClient(*ep)
	}
	deadline := time.Now().Add(time.Duration(*seconds) * time.Second)
	var mu sync.Mutex
	var puts, gets []time.Duration
	var errs int
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var lists []time.Duration
	var listBytes int
	if *doList {
		lc := newClient(*ep)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer lc.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				r, err := lc.Get(ctx, prefix, clientv3.WithPrefix())
				cancel()
				if err != nil {
					fmt.Fprintln(os.Stderr, "list:", err)
					continue
				}
				lists = append(lists, time.Since(t0))
				if listBytes == 0 {
					listBytes = (*pb.RangeResponse)(r).Size()
				}
			}
		}()
		time.Sleep(200 * time.Millisecond) // the first LIST is under way
	}
	var cwg sync.WaitGroup
	for i, c := range cs {
		cwg.Add(1)
		go func(i int, c *clientv3.Client) {
			defer cwg.Done()
			rng := rand.New(rand.NewSource(int64(i)))
			own := fmt.Sprintf("/li/w/%03d", i)
			val := strings.Repeat("p", 100)
			var myPuts, myGets []time.Duration
			myErrs := 0
			for n := 0; time.Now().Before(deadline); n++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				t0 := time.Now()
				var err error
				if n%2 == 0 {
					_, err = c.Put(ctx, own, val)
					myPuts = append(myPuts, time.Since(t0))
				} else {
					_, err = c.Get(ctx, fmt.Sprintf("%s%06d", prefix, rng.Intn(*keys)))
					myGets = append(myGets, time.Since(t0))
				}
				cancel()
				if err != nil {
					myErrs++
				}
			}
			mu.Lock()
			puts = append(puts, myPuts...)
			gets = append(gets, myGets...)
			errs += myErrs
			mu.Unlock()
		}(i, c)
	}
	cwg.Wait()
	close(stop)
	wg.Wait()
	for _, c := range cs {
		c.Close()
	}
	all := append(append([]time.Duration{}, puts...), gets...)
	fmt.Printf("ops=%d errs=%d put_p50_ms=%.2f put_p99_ms=%.2f get_p50_ms=%.2f get_p99_ms=%.2f all_p99_ms=%.2f lists=%d list_p50_ms=%.1f list_mb=%.1f\n",
		len(all), errs, pct(puts, 0.5), pct(puts, 0.99), pct(gets, 0.5), pct(gets, 0.99), pct(all, 0.99),
		len(lists), pct(lists, 0.5), float64(listBytes)/1e6)
}
